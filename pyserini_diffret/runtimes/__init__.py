"""Runtimes turn an encoded batch into slot vectors and pooled term weights.

Every runtime implements ``run(batch, content_mask, stop_truncation) -> (slot_vectors, term_weights)``
as float32 numpy arrays; prompts before and post-processing after are shared (``pyserini_diffret.model``).
"""
