"""``python -m pyserini_diffret.encode ... encoder --parallel N``: the same bytes as one process, checkpoints that
match what they name although reading runs ahead, a resume after a failure, and the refusals."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyserini_diffret.core.representations import REPRESENTATIONS
from pyserini_diffret.shared import shared_model
from pyserini_diffret.workflow import store
from pyserini_diffret.workflow.encode import encode_corpus, main
from tests.test_parallel import workers_alive
from tests.workflow.fixtures import sample  # noqa: F401
from tests.workflow.test_encode import files_of


@pytest.fixture(scope="module")
def corpus(sample, tmp_path_factory) -> Path:  # noqa: F811
    """The sample corpus with a bad record (skipped) and an empty text: chunks of 10 documents span 11 records."""
    lines = Path(sample[0]).read_text(encoding="utf-8").splitlines()
    lines[3:3] = ["not json"]
    lines.append(json.dumps({"_id": "empty", "title": "", "text": ""}))
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def argv(corpus: Path, output: Path, parallel: int, *extra: str) -> list[str]:
    return ["input", "--corpus", str(corpus), "--skip-invalid", "output", "--embeddings", str(output),
            "encoder", "--encoder", "diffret", "--batch-size", "4", "--chunk-size", "10",  # batches of 4, 4, 2
            "--parallel", str(parallel), *extra]


def test_parallel_output_is_byte_identical_and_checkpoints_match(corpus, tmp_path, capsys, monkeypatch):
    assert main(argv(corpus, tmp_path / "one", 1, "--quiet")) == 0
    one = capsys.readouterr().out
    assert "accounting: read 42, encoded 41, written 41, empty sparse vectors 1, skipped 1" in one
    states = []
    checkpoint = store.StoreWriter.checkpoint

    def recording(self, state):
        states.append(state)
        checkpoint(self, state)

    monkeypatch.setattr(store.StoreWriter, "checkpoint", recording)
    assert main(argv(corpus, tmp_path / "two", 2)) == 0  # with the progress bar
    two = capsys.readouterr()
    assert "accounting: read 42, encoded 41, written 41" in two.out and "42/42" in two.err
    assert files_of(tmp_path / "two", skip=()) == files_of(tmp_path / "one", skip=())
    # Each checkpoint's counts are those at its position, although the workers were fed further ahead.
    assert [state["position"]["record"] for state in states] == [0, 11, 21, 31, 41, 42]
    for state in states:
        counts = state["counts"]
        assert counts["read"] == state["position"]["record"]
        assert counts["read"] == counts["encoded"] + counts["skipped"] and counts["written"] == counts["encoded"]
    assert not workers_alive()


def test_a_failed_parallel_run_resumes_to_the_same_bytes(corpus, tmp_path, monkeypatch):
    options = dict(use_titles=True, skip_invalid=True, batch_size=4, chunk_size=10,
                   representations=list(REPRESENTATIONS), progress=False, log=lambda message: None, parallel=2)
    model = shared_model("diffret", "cpu", batch_size=4)
    encode_corpus(corpus, tmp_path / "reference", model, **dict(options, parallel=1))
    append = store.StoreWriter.append
    calls = []

    def failing(self, *args):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        append(self, *args)

    monkeypatch.setattr(store.StoreWriter, "append", failing)
    with pytest.raises(OSError, match="disk full"):
        encode_corpus(corpus, tmp_path / "resumed", model, **options)
    assert not workers_alive()
    assert json.loads((tmp_path / "resumed" / ".checkpoint.json").read_text())["position"]["record"] == 21
    monkeypatch.setattr(store.StoreWriter, "append", append)
    result = encode_corpus(corpus, tmp_path / "resumed", model, **options)
    assert result.resumed_from == 21 and result.accounting["written"] == 41
    assert files_of(tmp_path / "resumed", skip=()) == files_of(tmp_path / "reference", skip=())


def test_parallel_is_refused_on_a_gpu_and_below_one(corpus, tmp_path, capsys):
    assert main(argv(corpus, tmp_path / "gpu", 2, "--device", "cuda")) == 2
    assert "error: --parallel 2 runs worker processes on CPU only; with --device cuda use --parallel 1" \
        in capsys.readouterr().err
    assert main(argv(corpus, tmp_path / "none", 0)) == 2
    assert "error: --parallel must be >= 1 (worker processes), got 0" in capsys.readouterr().err
