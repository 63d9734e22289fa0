"""Runtimes turn an encoded batch into slot vectors and per-slot scores at the texts' own words.

Every runtime implements ``run(batch, content_ids, stop_truncation) -> (slot_vectors, content_scores)``
as float32 numpy arrays; prompts before and post-processing after (top-k, max-pool, quantisation) are shared
(``pyserini_diffret.model``, ``core.representations``).
"""
