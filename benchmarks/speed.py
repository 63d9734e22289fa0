"""What K costs: one-pass diffusion backbones vs the autoregressive baseline, measured side by side.

Encodes the same 64 SciFact passages (title + text, truncated to 256 text tokens: a few hundred tokens
with the prompt) and 64 SciFact train queries with K = 1, 4, 16 on CPU, torch runtime, with random models
of each family at MiniLM scale (hidden 384, 6 layers, ~30k vocabulary: timing does not depend on the
weights). The autoregressive baseline never stops early here, so it always pays its K steps.

    python benchmarks/speed.py [--data ../shared/data/scifact] [--repeats 3] [--threads N]

Prints one table: texts/s and the cost relative to K = 1 of the same backbone.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import torch  # noqa: E402

from pyserini_diffret import load_model  # noqa: E402
from tests.tiny_models import BUILDERS  # noqa: E402
from timing import interleaved_best  # noqa: E402

SIZE = dict(hidden=384, layers=6)
VOCAB = {"mlm": 30522, "dream": 32000, "llada": 32000, "ar": 32000}
KS = (1, 4, 16)


def read_texts(data: Path, n: int) -> tuple[list[str], list[str]]:
    corpus = data / "corpus.jsonl"
    queries = data / "queries.jsonl"
    if not corpus.is_file() or not queries.is_file():
        raise SystemExit(f"{data}: expected a BEIR folder with corpus.jsonl and queries.jsonl")
    passages = []
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            if len(doc["text"].split()) >= 150:
                passages.append(f"{doc['title']}. {doc['text']}")
            if len(passages) == n:
                break
    with open(queries, encoding="utf-8") as f:
        query_texts = [json.loads(line)["text"] for _, line in zip(range(n), f)]
    return passages, query_texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "scifact")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    passages, queries = read_texts(args.data, 64)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; 64 passages, 64 queries, "
          f"batch {args.batch_size}, best of {args.repeats}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for family, build in BUILDERS.items():
            folder = build(Path(tmp) / family, vocab_size=VOCAB[family], **SIZE)
            models = {}
            for k in KS:
                models[k] = load_model(folder, backbone=family, k_query=k, k_doc=k, batch_size=args.batch_size,
                                       max_document_length=256, max_query_length=64)
                if family == "ar":
                    models[k].runtime.backbone.__dict__["_stop_ids"] = torch.tensor([-1])
            for side, texts in (("document", passages), ("query", queries)):
                encoders = {
                    k: (lambda m=m: (m.encode_documents if side == "document" else m.encode_queries)(texts))
                    for k, m in models.items()
                }
                best = interleaved_best(encoders, args.repeats)
                for k in KS:
                    tokens = models[k].prompts.build(texts[:1], side, k).input_ids.shape[1]
                    ratio = best[k] / best[KS[0]]
                    rows.append((family, side, k, tokens, len(texts) / best[k], ratio))
                    print(f"  {family:6} {side:8} K={k:<3} {len(texts) / best[k]:8.1f} texts/s  x{ratio:.2f}", flush=True)
    print()
    print("| backbone | side | K | tokens (1st text) | texts/s | cost vs K=1 |")
    print("|---|---|---|---|---|---|")
    for family, side, k, tokens, rate, ratio in rows:
        print(f"| {family} | {side} | {k} | {tokens} | {rate:.1f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
