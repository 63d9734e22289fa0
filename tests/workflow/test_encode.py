"""One-pass encoding: outputs, accounting, sharding + merge, resume after a kill, bad input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pyserini_diffret.workflow.encode import encode_corpus, main
from pyserini_diffret.workflow.store import merge_stores
from tests.conftest import REPO, clean_env, run_python
from tests.workflow.crash_encode import EXIT_STATUS
from tests.workflow.fixtures import (  # noqa: F401
    encode_command, encoded_sample, loaded_model, model_dir, sample,
)


def files_of(folder: Path, skip=("encode.json",)) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in skip}


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def test_outputs_agree_with_the_model(encoded_sample, loaded_model, sample):
    import faiss

    corpus = read_jsonl(sample[0])
    manifest = json.loads((encoded_sample / "encode.json").read_text())
    assert manifest["accounting"] == {"read": 40, "encoded": 40, "written": 40, "empty_sparse": 0, "skipped": 0,
                                      "empty": 0, "missing_fields": 0, "clipped": 0}
    ids = [doc["_id"] for doc in corpus]
    for name in ("docid", "dense/docid", "slots/docid"):
        assert (encoded_sample / name).read_text().splitlines() == ids
    reps = loaded_model.encode_documents([d["text"] for d in corpus], [d["title"] for d in corpus])
    impact = read_jsonl(encoded_sample / "impact" / "part-00000.jsonl")
    assert [line["id"] for line in impact] == ids
    assert [line["vector"] for line in impact] == reps.weights
    assert impact[0]["contents"] == f"{corpus[0]['title']}\n{corpus[0]['text']}"
    index = faiss.read_index(str(encoded_sample / "dense" / "index"))
    assert index.ntotal == 40 and index.d == loaded_model.hidden_size
    np.testing.assert_allclose(index.reconstruct_n(0, 40), reps.dense, atol=1e-5)
    slots = np.fromfile(encoded_sample / "slots" / "vectors.float32", np.float32).reshape(reps.slots.shape)
    np.testing.assert_allclose(slots, reps.slots, atol=1e-5)
    assert not (encoded_sample / ".checkpoint.json").exists()
    assert not (encoded_sample / "dense" / "vectors.float32").exists()


def test_complete_folder_is_not_redone_and_settings_are_checked(tmp_path, loaded_model, sample):
    out = tmp_path / "out"
    first = encode_corpus(sample[0], out, loaded_model, batch_size=8, progress=False, log=lambda m: None)
    assert first.accounting_line.startswith("accounting: read 40, encoded 40, written 40, empty sparse vectors 0, skipped 0")
    again = encode_corpus(sample[0], out, loaded_model, batch_size=8, progress=False, log=lambda m: None)
    assert again.already_complete
    with pytest.raises(ValueError, match="other settings"):
        encode_corpus(sample[0], out, loaded_model, batch_size=4, progress=False, log=lambda m: None)
    redone = encode_corpus(sample[0], out, loaded_model, batch_size=4, overwrite=True, progress=False,
                           representations=["impact"], log=lambda m: None)
    assert not redone.already_complete and not (out / "dense" / "index").exists()


def test_shards_merge_into_the_unsharded_output(tmp_path, loaded_model, sample):
    options = dict(batch_size=4, chunk_size=4, progress=False, log=lambda m: None)
    encode_corpus(sample[0], tmp_path / "full", loaded_model, **options)
    for shard in range(2):
        encode_corpus(sample[0], tmp_path / f"shard{shard}", loaded_model, shard_id=shard, shard_num=2, **options)
    assert len((tmp_path / "shard0" / "docid").read_text().splitlines()) == 20
    assert main(["merge", "--inputs", str(tmp_path / "shard0"), str(tmp_path / "shard1"),
                 "--output", str(tmp_path / "merged")]) == 0
    assert files_of(tmp_path / "merged") == files_of(tmp_path / "full")  # chunks align: same bytes
    merged = json.loads((tmp_path / "merged" / "encode.json").read_text())
    assert merged["accounting"]["written"] == 40 and len(merged["shards"]) == 2
    with pytest.raises(ValueError, match="duplicate id"):
        merge_stores([tmp_path / "shard0", tmp_path / "shard0"], tmp_path / "dup")


def crash(event: str, encode: list[str]) -> subprocess.CompletedProcess:
    """``python -m pyserini_diffret.encode ...`` ended abruptly at ``event`` (see tests/workflow/crash_encode.py)."""
    assert encode[:2] == ["-m", "pyserini_diffret.encode"]
    return subprocess.run([sys.executable, "-m", "tests.workflow.crash_encode", event, *encode[2:]], cwd=REPO,
                          env=clean_env(), capture_output=True, text=True)


def test_resume_after_kill_gives_identical_bytes(tmp_path, model_dir, sample):
    """Crashes at every kind of point (mid-chunk, mid-checkpoint, mid-finalise) and a real SIGKILL."""
    corpus = tmp_path / "corpus.jsonl"
    with open(corpus, "w", encoding="utf-8") as f:
        for copy in range(4):
            for doc in read_jsonl(sample[0]):
                f.write(json.dumps(dict(doc, _id=f"{doc['_id']}-{copy}")) + "\n")
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    run_python(*encode_command(corpus, reference, model_dir))
    encode = encode_command(corpus, resumed, model_dir)
    command = [sys.executable, *encode]
    for event in ("append:3", "checkpoint:4"):
        proc = crash(event, encode)
        assert proc.returncode == EXIT_STATUS, proc.stderr
        assert not (resumed / "encode.json").exists()
    done = json.loads((resumed / ".checkpoint.json").read_text())["position"]["record"]
    assert 0 < done < 160
    proc = subprocess.Popen(command, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        checkpoint = resumed / ".checkpoint.json"
        try:
            if json.loads(checkpoint.read_text())["position"]["record"] >= done + 8:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if (resumed / "encode.json").exists():
        pytest.fail("the run finished before it could be killed; make the corpus larger")
    proc = crash("finalize:1", encode)
    assert proc.returncode == EXIT_STATUS and "resuming" in proc.stderr, proc.stderr
    assert (resumed / "dense" / "index").exists() and not (resumed / "encode.json").exists()
    out = run_python(*encode_command(corpus, resumed, model_dir)).stdout
    assert "accounting: read 160, encoded 160, written 160, empty sparse vectors 0, skipped 0" in out
    assert files_of(resumed, skip=()) == files_of(reference, skip=())


def test_bad_input_stops_with_file_and_line(tmp_path, model_dir, sample, capsys):
    lines = Path(sample[0]).read_text(encoding="utf-8").splitlines()
    corpus = tmp_path / "bad.jsonl"
    corpus.write_text("\n".join(lines[:5] + [lines[2]] + lines[5:]) + "\n", encoding="utf-8")
    argv = ["input", "--corpus", str(corpus), "output", "--embeddings", str(tmp_path / "out"),
            "encoder", "--encoder", str(model_dir), "--quiet"]
    assert main(argv) == 2
    assert f"{corpus}:6: duplicate id 's03' (first seen at {corpus}:3)" in capsys.readouterr().err
    argv[5] = str(tmp_path / "skipping")
    assert main([*argv[:3], "--skip-invalid", *argv[3:]]) == 0
    out = capsys.readouterr().out
    assert "accounting: read 41, encoded 40, written 40, empty sparse vectors 0, skipped 1" in out


def test_empty_texts_are_encoded_and_counted(tmp_path, loaded_model):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(json.dumps(d) for d in [
        {"id": "a", "contents": "Aspirin reduces the risk of heart attack."},
        {"id": "b", "contents": ""},
        {"id": "c", "contents": "   "},
    ]) + "\n", encoding="utf-8")
    result = encode_corpus(corpus, tmp_path / "out", loaded_model, progress=False, log=lambda m: None)
    assert result.accounting["written"] == 3 and result.accounting["empty"] == 2
    assert result.accounting["empty_sparse"] >= 2
    vectors = [line["vector"] for line in read_jsonl(tmp_path / "out" / "impact" / "part-00000.jsonl")]
    assert vectors[1] == {} and vectors[2] == {}
    assert (tmp_path / "out" / "dense" / "docid").read_text().splitlines() == ["a", "b", "c"]


def _encode_argv(corpus, output, model_dir, *extra_input):
    return ["input", "--corpus", str(corpus), *extra_input, "output", "--embeddings", str(output),
            "encoder", "--encoder", str(model_dir), "--batch-size", "8", "--quiet"]


@pytest.mark.parametrize("field", ["text", "title", "_id"])
def test_lone_surrogate_stops_with_file_and_line_or_is_skipped(tmp_path, model_dir, sample, capsys, field):
    lines = Path(sample[0]).read_text(encoding="utf-8").splitlines()[:6]
    record = json.loads(lines[3])
    record[field] = record[field] + "\ud800"  # json.dumps writes it escaped: valid JSON, no UTF-8 for it
    lines[3] = json.dumps(record)
    corpus = tmp_path / "scraped.jsonl"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(_encode_argv(corpus, tmp_path / "out", model_dir)) == 2
    err = capsys.readouterr().err
    assert f"error: {corpus}:4: " in err and "surrogate" in err and "Traceback" not in err
    assert main(_encode_argv(corpus, tmp_path / "skipping", model_dir, "--skip-invalid")) == 0
    assert "accounting: read 6, encoded 5, written 5, empty sparse vectors 0, skipped 1" in capsys.readouterr().out


def test_no_documents_is_an_error(tmp_path, model_dir, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert main(_encode_argv(empty, tmp_path / "out", model_dir)) == 2
    err = capsys.readouterr().err
    assert f"error: {empty}: " in err and "nothing was encoded" in err
    assert not (tmp_path / "out" / "encode.json").exists()
    bad = tmp_path / "all-bad.jsonl"
    bad.write_text('{"_id": "a"}\n{"text": "no id"}\nnot json\n', encoding="utf-8")
    assert main(_encode_argv(bad, tmp_path / "out2", model_dir, "--skip-invalid")) == 2
    err = capsys.readouterr().err
    assert f"error: {bad}: " in err and "all 3 records were skipped as invalid" in err
    assert "nothing was encoded" in err
    assert not (tmp_path / "out2" / "encode.json").exists()


def test_rerun_on_a_finished_folder_reports_no_rate(tmp_path, model_dir, sample, capsys):
    argv = _encode_argv(sample[0], tmp_path / "out", model_dir)
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "docs/s" in first
    assert main(argv) == 0
    again = capsys.readouterr()
    assert "docs/s" not in again.out and "already complete" in again.out
    assert "accounting: read 40, encoded 40, written 40" in again.out
