"""One writer per output folder: encode, merge and the run command's encoding step lock the folder.

The holder in these tests is a real encode paused after its first chunk: ``python -m
tests.workflow.test_store_lock READY GO ENCODE-ARGS...`` (from the repository root) runs ``python -m
pyserini_diffret.encode ENCODE-ARGS...``, creates ``READY`` after the first chunk is written and waits for
``GO`` to exist before it goes on (the store's ``append`` is wrapped here; the product knows nothing of it).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, clean_env, run_python
from tests.workflow.fixtures import (  # noqa: F401
    encode_command, encoded_sample, loaded_model, model_dir, sample,
)

LOCK_NAME = ".lock"


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "encode.json"}


def start_paused_encode(encode: list[str], tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """An encode that holds the output folder: paused after its first chunk until ``go`` exists."""
    assert encode[:2] == ["-m", "pyserini_diffret.encode"]
    ready, go = tmp_path / "ready", tmp_path / "go"
    proc = subprocess.Popen([sys.executable, "-m", "tests.workflow.test_store_lock", str(ready), str(go), *encode[2:]],
                            cwd=REPO, env=clean_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while not ready.exists():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"the first encode did not reach its first chunk (exit {proc.returncode}):\n{out}\n{err}")
        time.sleep(0.05)
    return proc, go


def test_second_writer_fails_fast_naming_the_first(tmp_path, model_dir, sample, encoded_sample):
    out = tmp_path / "out"
    encode = encode_command(sample[0], out, model_dir)
    first, go = start_paused_encode(encode, tmp_path)
    try:
        # the same command again: refused at once (no waiting, no "resuming" into the folder)
        started = time.time()
        second = subprocess.run([sys.executable, *encode], env=clean_env(), stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stdout + second.stderr
        assert "resuming" not in second.stderr
        message = second.stderr
        assert f"{out} is being written by another process" in message, message
        assert f"pid {first.pid}" in message and socket.gethostname() in message, message
        assert "-m tests.workflow.test_store_lock " in message and f"--embeddings {out} " in message, message  # its command
        assert time.time() - started < 60
        # merge into the folder: refused the same way
        merge = subprocess.run([sys.executable, "-m", "pyserini_diffret.encode", "merge", "--inputs",
                                str(encoded_sample), "--output", str(out)], env=clean_env(),
                               stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        assert merge.returncode == 2 and f"pid {first.pid}" in merge.stderr, merge.stdout + merge.stderr
        assert not (out / "encode.json").exists()
    finally:
        go.touch()
    out_text, err_text = first.communicate(timeout=180)
    assert first.returncode == 0, out_text + err_text
    assert "accounting: read 40, encoded 40, written 40" in out_text
    # the first run finished alone: nothing stale beside the finished encoding, same bytes as a lone run
    assert not (out / ".checkpoint.json").exists() and not (out / ".checkpoint.json.tmp").exists()
    assert files_of(out) == files_of(encoded_sample)


def test_encode_function_and_run_command_take_the_lock(tmp_path, model_dir, sample, loaded_model):
    """``encode_corpus`` (what ``python -m pyserini_diffret.run`` calls for its encoding step) and the run
    pipeline itself are refused while another process writes the folder."""
    from pyserini_diffret.workflow.encode import encode_corpus
    from pyserini_diffret.workflow.run import Inputs, run_pipeline

    run_folder = tmp_path / "run"
    out = run_folder / "encoded"
    first, go = start_paused_encode(encode_command(sample[0], out, model_dir), tmp_path)
    try:
        with pytest.raises(ValueError, match=rf"is being written by another process \(pid {first.pid} "):
            encode_corpus(sample[0], out, loaded_model, batch_size=8, chunk_size=8, progress=False, log=lambda m: None)
        with pytest.raises(ValueError, match=rf"pid {first.pid} "):
            run_pipeline(Inputs(*sample, label="sample"), run_folder, model_name=str(model_dir), batch_size=8, progress=False,
                         log=lambda m: None)
    finally:
        go.touch()
    assert first.wait(timeout=180) == 0


def test_lock_of_a_killed_writer_does_not_block_a_rerun(tmp_path, model_dir, sample, encoded_sample):
    out = tmp_path / "out"
    encode = encode_command(sample[0], out, model_dir)
    first, _ = start_paused_encode(encode, tmp_path)
    os.kill(first.pid, signal.SIGKILL)
    first.communicate()
    owner = json.loads((out / LOCK_NAME).read_text())  # what the killed writer left: its name, no lock
    assert owner["pid"] == first.pid and owner["host"] == socket.gethostname()
    proc = run_python(*encode)  # takes the folder over and resumes
    assert "resuming" in proc.stderr
    assert "accounting: read 40, encoded 40, written 40" in proc.stdout
    assert not (out / ".checkpoint.json").exists()
    assert (out / LOCK_NAME).read_text() == ""  # released: no owner named
    assert files_of(out) == files_of(encoded_sample)


def test_lock_in_one_process(tmp_path):
    from pyserini_diffret.workflow.store import OutputLock, OutputLockedError, check_unlocked

    folder = tmp_path / "out"
    with OutputLock(folder):
        owner = json.loads((folder / LOCK_NAME).read_text())
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        assert {"started", "command"} <= set(owner)
        with pytest.raises(OutputLockedError, match=f"pid {os.getpid()} on {socket.gethostname()}, since "):
            OutputLock(folder).acquire()
        with pytest.raises(OutputLockedError):
            check_unlocked(folder)
    assert (folder / LOCK_NAME).read_text() == ""
    check_unlocked(folder)
    check_unlocked(tmp_path / "absent")  # a folder that does not exist is not locked (and is not created)
    assert not (tmp_path / "absent").exists()
    with OutputLock(folder):  # free again
        pass


# -- the paused encode (run as a module) ---------------------------------------------------------------------
def _paused_encode(argv: list[str]) -> int:
    ready, go = Path(argv[0]), Path(argv[1])
    from pyserini_diffret.workflow import store

    append = store.StoreWriter.append

    def paused_append(self, *args, **kwargs):
        append(self, *args, **kwargs)
        if not ready.exists():
            ready.touch()
            deadline = time.time() + 300
            while not go.exists() and time.time() < deadline:
                time.sleep(0.05)

    store.StoreWriter.append = paused_append
    from pyserini_diffret.integration import setup
    from pyserini_diffret.workflow.encode import main as encode_main

    setup()  # as python -m pyserini_diffret.encode does
    return encode_main(argv[2:])


if __name__ == "__main__":
    sys.exit(_paused_encode(sys.argv[1:]))
