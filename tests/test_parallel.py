"""The streaming API (``DiffRetriever.embed_documents`` / ``embed_queries``) and its worker processes
(``pyserini_diffret.parallel``): laziness, order, identical results, errors, clean shutdown.

Each test that starts workers starts two (``spawn``: a few seconds each, mostly imports); the model is the
embedded default (ONNX int8), except for one torch test.
"""
from __future__ import annotations

import functools
import itertools

import psutil
import pytest

from pyserini_diffret import load_model
from pyserini_diffret.parallel import AHEAD, WorkerError
from tests.workflow.fixtures import model_dir  # noqa: F401

# Lengths vary a lot, so that batches take different times and finish out of order in the workers.
TEXTS = [f"Document {i}: vitamin d supplements and bone fractures in older adults. " * (1 + (i * 7) % 9)
         for i in range(22)]
TITLES = [f"Title {i}" if i % 3 else None for i in range(22)]


@pytest.fixture(scope="module")
def model():
    return load_model("diffret")


def same(a, b) -> None:
    """Byte-identical representations."""
    assert a.dense.tobytes() == b.dense.tobytes() and a.slots.tobytes() == b.slots.tobytes()
    assert len(a.term_ids) == len(b.term_ids)
    for x, y in zip(a.term_ids + a.term_impacts, b.term_ids + b.term_impacts):
        assert x.tobytes() == y.tobytes()
    assert a.impact == b.impact


def workers_alive() -> list[psutil.Process]:
    """Worker processes (``spawn_main``) still running under this one; the resource tracker is not one."""
    alive = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "spawn_main" in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                alive.append(child)
        except psutil.NoSuchProcess:
            pass
    return alive


def counting(texts, seen: list[int]):
    """``texts`` one by one, counting in ``seen[0]`` how many were taken."""
    for text in texts:
        seen[0] += 1
        yield text


# -- in this process ---------------------------------------------------------------------------------------
def test_each_batch_equals_encode_documents_of_that_batch(model):
    items = [(text, title) for text, title in zip(TEXTS, TITLES)]
    batches = list(model.embed_documents(items, batch_size=5))
    assert [len(b) for b in batches] == [5, 5, 5, 5, 2]
    for start, got in zip(range(0, 22, 5), batches):
        same(got, model.encode_documents(TEXTS[start:start + 5], TITLES[start:start + 5]))
    plain = list(model.embed_documents(iter(TEXTS), batch_size=8))
    same(plain[0], model.encode_documents(TEXTS[:8]))
    queries = list(model.embed_queries(t[:60] for t in TEXTS[:7]))  # the model's batch size: one batch
    assert len(queries) == 1
    same(queries[0], model.encode_queries([t[:60] for t in TEXTS[:7]]))
    assert list(model.embed_documents([])) == []


def test_the_stream_is_read_one_batch_at_a_time(model):
    seen = [0]
    stream = model.embed_queries(counting((f"query {i}" for i in itertools.count()), seen), batch_size=4)
    assert seen[0] == 0  # nothing read before the first result is asked for
    first, second = next(stream), next(stream)
    assert len(first) == len(second) == 4 and seen[0] == 8
    stream.close()


def test_bad_arguments_are_refused_at_the_call(model, monkeypatch):
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        model.embed_documents(TEXTS, batch_size=0)
    with pytest.raises(ValueError, match="parallel must be an integer >= 1"):
        model.embed_documents(TEXTS, parallel=0)
    with pytest.raises(TypeError, match="not a single string"):
        model.embed_queries("one query")
    with pytest.raises(TypeError, match=r"texts\[1\] is int, not a text or a \(text, title\) pair"):
        list(model.embed_documents(["fine", 3]))
    with pytest.raises(TypeError, match=r"texts\[0\]\[1\] \(the title\) is int, not str"):
        list(model.embed_documents([("text", 7)]))
    with pytest.raises(TypeError, match=r"texts\[2\] is NoneType, not str"):
        list(model.embed_queries(["a", "b", None]))
    monkeypatch.setattr(model, "load_arguments", dict(model.load_arguments, device="cuda"))
    with pytest.raises(ValueError, match="CPU only, and this model is on cuda:0"):
        model.embed_documents(TEXTS, parallel=2)
    monkeypatch.setattr(model, "load_arguments", None)  # as a DiffRetriever built without load_model
    with pytest.raises(ValueError, match="not made by load_model"):
        model.embed_documents(TEXTS, parallel=2)


def test_load_recipe_carries_changed_lengths(model):
    changed = load_model("diffret", batch_size=16)
    loader, arguments = changed.load_recipe()
    assert loader is load_model and arguments["batch_size"] == 16 and "max_document_length" not in arguments
    changed.set_lengths(query=9, document=40)
    _, arguments = changed.load_recipe()
    assert arguments["max_query_length"] == 9 and arguments["max_document_length"] == 40
    assert loader(**arguments).config == changed.config


# -- in worker processes ---------------------------------------------------------------------------------------
def test_workers_give_the_same_bytes_in_input_order(model):
    shorter = load_model("diffret")
    shorter.set_lengths(document=24)  # must travel to the workers (their config is checked against this one)
    items = list(zip(TEXTS, TITLES))
    alone = list(shorter.embed_documents(items, batch_size=3))
    pooled = list(shorter.embed_documents(iter(items), batch_size=3, parallel=2))
    assert [len(b) for b in pooled] == [3] * 7 + [1]
    for a, b in zip(alone, pooled, strict=True):
        same(a, b)
    assert pooled[0].vocabulary is shorter.vocabulary  # sent without it, given back here
    assert not workers_alive()


def test_workers_read_a_few_batches_ahead_and_stop_when_closed(model):
    seen = [0]
    stream = model.embed_queries(counting((f"query {i}" for i in itertools.count()), seen), batch_size=4,
                                 parallel=2)
    assert next(stream).dense.shape[0] == 4
    assert 4 <= seen[0] <= 4 * (AHEAD * 2 + 1)  # an endless stream, read only as far as the queue allows
    assert len(workers_alive()) == 2
    stream.close()
    assert not workers_alive()


def _interrupted(texts):
    yield from texts
    raise KeyboardInterrupt


def test_ctrl_c_stops_the_workers(model):
    stream = model.embed_documents(_interrupted(TEXTS[:6]), batch_size=2, parallel=2)
    with pytest.raises(KeyboardInterrupt):
        list(stream)
    assert not workers_alive()


# Loaders for the workers (module level: a ``spawn`` worker imports them by name).
def load_failing_on(marker: str, **arguments):
    """``load_model``, with ``encode`` failing on a batch that holds ``marker``."""
    loaded = load_model(**arguments)
    encode = loaded.encode

    def failing(texts, side, batch_size=None):
        if marker in texts:
            raise ValueError(f"cannot encode {marker!r}")
        return encode(texts, side, batch_size)

    loaded.encode = failing
    return loaded


def load_nothing(**arguments):
    raise FileNotFoundError("model folder gone")


def test_a_failing_batch_is_named(model, monkeypatch):
    _, arguments = model.load_recipe()
    monkeypatch.setattr(model, "load_recipe", lambda: (functools.partial(load_failing_on, "BAD"), dict(arguments)))
    texts = ["a", "b", "c", "d", "BAD", "e", "f", "g"]
    with pytest.raises(WorkerError, match=r"batch 2 \(counting from 0; 2 texts\) failed in worker process \d "
                                          r"\(pid \d+\): ValueError: cannot encode 'BAD'") as caught:
        list(model.embed_queries(texts, batch_size=2, parallel=2))
    assert "Traceback" in caught.value.__notes__[0]
    assert not workers_alive()


def test_a_worker_that_cannot_load_is_reported(model, monkeypatch):
    _, arguments = model.load_recipe()
    monkeypatch.setattr(model, "load_recipe", lambda: (load_nothing, dict(arguments)))
    with pytest.raises(WorkerError, match="could not load the model .*: FileNotFoundError: model folder gone"):
        list(model.embed_queries(["a", "b"], batch_size=1, parallel=2))
    assert not workers_alive()


def test_torch_workers(model_dir):  # noqa: F811
    torch_model = load_model(model_dir)
    assert torch_model.runtime.name == "torch"
    texts = TEXTS[:10]
    pooled = list(torch_model.embed_documents(texts, batch_size=4, parallel=2))
    for start, got in zip(range(0, 10, 4), pooled, strict=True):
        same(got, torch_model.encode_documents(texts[start:start + 4]))


_ENDLESS = """
import itertools, sys
from pyserini_diffret import load_model

if __name__ == "__main__":
    stream = load_model("diffret").embed_queries((f"query {i}" for i in itertools.count()), batch_size=2, parallel=2)
    next(stream)
    print("running", flush=True)
    for _ in stream:
        pass
"""


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGKILL"])
def test_no_worker_outlives_an_interrupted_or_killed_parent(tmp_path, signal_name):
    """SIGINT to the whole process group, as a terminal sends it (the workers ignore it, the parent stops
    them), or SIGKILL to the parent alone (the workers see it gone and exit)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "endless.py"
    script.write_text(_ENDLESS, encoding="utf-8")
    def as_from_a_terminal() -> None:
        # The child must start as a shell would start it. This process's signal state may not be that: what
        # earlier tests loaded (the JVM behind Pyserini blocks SIGQUIT here, for one) can leave signals blocked
        # or ignored, and a child inherits both. In the full suite the child printed nothing: SIGINT never came.
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=as_from_a_terminal)
    try:
        assert proc.stdout.readline().strip() == "running", proc.stderr.read()
        if signal_name == "SIGINT":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    if signal_name == "SIGINT":
        assert "KeyboardInterrupt" in err and err.count("Traceback") == 1, err  # the parent's alone
    deadline = time.time() + 15
    while time.time() < deadline:
        left = []
        for process in psutil.process_iter(["cmdline"]):
            try:
                if os.getsid(process.pid) == proc.pid and process.status() != psutil.STATUS_ZOMBIE:
                    left.append(process)
            except (psutil.NoSuchProcess, ProcessLookupError, PermissionError):
                pass
        if not left:
            break
        time.sleep(0.2)
    assert not left, [p.info["cmdline"] for p in left]
