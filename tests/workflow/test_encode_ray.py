"""``python -m pyserini_diffret.encode ... encoder --ray``: the same outputs and accounting as one process (int8
default model and an fp32 torch model), the same bad-input errors and counts, an actor that dies is restarted
and its batches encoded again, failures on the actors are named, documents that come back missing stop the
run before anything of them is written (and the run resumes), and the refusals. One local Ray cluster (2 CPUs)
serves the whole module; the tests that need Ray skip when the extra is not installed."""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from pyserini_diffret.core.representations import REPRESENTATIONS
from pyserini_diffret.shared import shared_model
from pyserini_diffret.workflow import ray_encode
from pyserini_diffret.workflow.encode import encode_corpus, main
from tests.conftest import run_python
from tests.workflow.fixtures import model_dir, sample  # noqa: F401
from tests.workflow.test_encode import files_of, read_jsonl
from tests.workflow.test_encode_parallel import corpus  # noqa: F401  (the sample, a bad record, an empty text)

NO_RAY = 'Ray is the optional extra "ray" (pip install -e ".[ray]"; make setup installs it)'


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster for the module: ``--ray`` without an address uses this process's connection."""
    ray = pytest.importorskip("ray", reason=NO_RAY)
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


def argv(corpus: Path, output: Path, *extra: str, model: str | Path = "diffret", skip_invalid: bool = True) -> list[str]:
    return ["input", "--corpus", str(corpus), *(["--skip-invalid"] if skip_invalid else []),
            "output", "--embeddings", str(output),
            "encoder", "--encoder", str(model), "--batch-size", "4", "--chunk-size", "10",  # batches of 4, 4, 2
            "--quiet", *extra]


def accounting(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("accounting:"))


def by_docid(folder: Path) -> dict[str, tuple]:
    """Each document's stored outputs, keyed by id: an order-independent view of a folder."""
    import faiss

    ids = (folder / "docid").read_text(encoding="utf-8").splitlines()
    index = faiss.read_index(str(folder / "dense" / "index"))
    dense = index.reconstruct_n(0, index.ntotal)
    meta = json.loads((folder / "slots" / "meta.json").read_text())
    slots = np.fromfile(folder / "slots" / "vectors.float32", dtype=np.float32).reshape(meta["count"], meta["k"], -1)
    impact = {line["id"]: line["vector"] for line in read_jsonl(folder / "impact" / "part-00000.jsonl")}
    return {docid: (dense[i].tobytes(), slots[i].tobytes(), impact[docid]) for i, docid in enumerate(ids)}


def test_ray_gives_the_bytes_and_accounting_of_one_process(cluster, corpus, tmp_path, capsys):  # noqa: F811
    assert main(argv(corpus, tmp_path / "one")) == 0
    one = capsys.readouterr().out
    assert main(argv(corpus, tmp_path / "ray", "--ray")) == 0
    on_ray = capsys.readouterr().out
    assert accounting(on_ray) == accounting(one) == ("accounting: read 42, encoded 41, written 41, empty sparse "
                                                     "vectors 1, skipped 1 (empty texts 1, missing fields 0, clipped 0)")
    # The embedded default is int8: the same batches give the same bytes, encode.json included.
    assert files_of(tmp_path / "ray", skip=()) == files_of(tmp_path / "one", skip=())
    assert _all_cpus_free(cluster)  # the run ended its actors


def test_fp32_torch_model_on_two_actors(cluster, corpus, model_dir, tmp_path, capsys):  # noqa: F811
    assert main(argv(corpus, tmp_path / "one", model=model_dir)) == 0
    one = capsys.readouterr().out
    assert main(argv(corpus, tmp_path / "ray", "--ray", "--parallel", "2", model=model_dir)) == 0
    assert accounting(capsys.readouterr().out) == accounting(one)
    reference = by_docid(tmp_path / "one")
    assert len(reference) == 41 and by_docid(tmp_path / "ray") == reference
    assert files_of(tmp_path / "ray", skip=()) == files_of(tmp_path / "one", skip=())


def test_bad_input_is_reported_as_by_one_process(cluster, corpus, tmp_path, capsys):  # noqa: F811
    assert main(argv(corpus, tmp_path / "one", skip_invalid=False)) == 2
    one = capsys.readouterr().err
    assert main(argv(corpus, tmp_path / "ray", "--ray", skip_invalid=False)) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == [line for line in one.splitlines() if line.startswith("error:")]
    assert errors[0].startswith(f"error: {corpus}:4: ")
    assert _all_cpus_free(cluster)


# A loader for the actors (module level: Ray imports it by name in the actor's process).
@dataclasses.dataclass(frozen=True)
class CrashOnce:
    """``load_model``, with the process exiting at its first batch unless ``marker`` exists (which it creates)."""

    loader: Callable
    marker: str

    def __call__(self, **arguments):
        loaded = self.loader(**arguments)
        encode = loaded.encode

        def crashing(texts, side, batch_size=None):
            if not os.path.exists(self.marker):
                Path(self.marker).write_text(str(os.getpid()), encoding="utf-8")
                os._exit(1)  # as a killed process or a lost node: no exception, no clean-up
            return encode(texts, side, batch_size)

        loaded.encode = crashing
        return loaded


def load_nothing(**arguments):
    raise FileNotFoundError("model folder gone")


@dataclasses.dataclass(frozen=True)
class FailOn:
    """``load_model``, with ``encode`` raising on a batch with a text that contains ``text``, or with the process
    exiting at every batch (``text`` None)."""

    loader: Callable
    text: str | None

    def __call__(self, **arguments):
        loaded = self.loader(**arguments)
        encode = loaded.encode

        def failing(texts, side, batch_size=None):
            if self.text is None:
                os._exit(1)
            if any(self.text in text for text in texts):
                raise ValueError("cannot encode this one")
            return encode(texts, side, batch_size)

        loaded.encode = failing
        return loaded


OPTIONS = dict(use_titles=True, skip_invalid=True, batch_size=4, chunk_size=10, representations=list(REPRESENTATIONS),
               progress=False, log=lambda message: None)


def test_an_actor_that_dies_is_restarted_and_nothing_is_lost(cluster, corpus, tmp_path, monkeypatch):  # noqa: F811
    model = shared_model("diffret", "cpu", batch_size=4)
    reference = encode_corpus(corpus, tmp_path / "reference", model, **OPTIONS)
    loader, arguments = model.load_recipe()
    marker = tmp_path / "crashed"
    monkeypatch.setattr(model, "load_recipe", lambda: (CrashOnce(loader, str(marker)), dict(arguments)))
    result = encode_corpus(corpus, tmp_path / "ray", model, ray="", parallel=2, **OPTIONS)
    assert marker.is_file()  # an actor did die, in the middle of the run
    assert result.accounting == reference.accounting
    assert files_of(tmp_path / "ray", skip=()) == files_of(tmp_path / "reference", skip=())


def test_failures_on_the_actors_are_named(cluster, corpus, tmp_path, monkeypatch):  # noqa: F811
    model = shared_model("diffret", "cpu", batch_size=4)
    loader, arguments = model.load_recipe()
    monkeypatch.setattr(model, "load_recipe", lambda: (load_nothing, dict(arguments)))
    with pytest.raises(ray_encode.RayEncodingError, match="a Ray actor could not load the model .*diffret: "
                                                          "FileNotFoundError: model folder gone"):
        encode_corpus(corpus, tmp_path / "load", model, ray="", **OPTIONS)
    # A batch whose encoding raises is named (and not retried: it would fail again).
    monkeypatch.setattr(model, "load_recipe", lambda: (FailOn(loader, "Tomato seeds germinate"), dict(arguments)))
    with pytest.raises(ray_encode.RayEncodingError, match=r"batch \d+ \(counting from 0; 4 documents, the first "
                                                          r"'s\d+'\) failed on a Ray actor: ValueError: cannot encode "
                                                          r"this one") as caught:
        encode_corpus(corpus, tmp_path / "encode", model, ray="", **OPTIONS)
    assert "Ray's report" in caught.value.__notes__[0]
    monkeypatch.setattr(model, "load_recipe", lambda: (FailOn(loader, None), dict(arguments)))
    with pytest.raises(ray_encode.RayEncodingError, match=r"batch 0 \(counting from 0; 4 documents, the first "
                                                          r"'s\d+'\): the Ray actor encoding it died, and again "
                                                          r"after each of 3 restarts"):
        encode_corpus(corpus, tmp_path / "crash", model, ray="", **OPTIONS)
    assert _all_cpus_free(cluster)


def test_documents_missing_from_a_result_stop_the_run_and_it_resumes(cluster, corpus, tmp_path, monkeypatch,
                                                                     capsys):  # noqa: F811
    assert main(argv(corpus, tmp_path / "one")) == 0
    receive = ray_encode._receive
    dropped = []

    def dropping(ray, result, number, docids, source):
        got, reps = receive(ray, result, number, docids, source)
        if number == 5:  # the last batch (2 documents) of the second chunk
            dropped.append(got[-1])
            return got[:-1], reps.take(np.arange(len(got) - 1))
        return got, reps

    monkeypatch.setattr(ray_encode, "_receive", dropping)
    assert main(argv(corpus, tmp_path / "ray", "--ray")) == 2
    err = capsys.readouterr().err
    assert (f"error: lost documents on Ray: batch 5 (counting from 0): 1 of its 2 documents came back without "
            f"vectors: {dropped[0]!r}. Its chunk was not written; run the same command again to resume") in err
    output = tmp_path / "ray"
    assert not (output / "encode.json").exists()
    assert json.loads((output / ".checkpoint.json").read_text())["position"]["record"] == 11  # the first chunk
    monkeypatch.setattr(ray_encode, "_receive", receive)
    assert main(argv(corpus, output, "--ray")) == 0
    assert "(resumed after 11)" in capsys.readouterr().out
    assert files_of(output, skip=()) == files_of(tmp_path / "one", skip=())


def test_check_documents_names_what_is_wrong():
    ray_encode.check_documents(0, ["a", "b"], ["a", "b"], 2)
    with pytest.raises(ray_encode.RayEncodingError, match=r"batch 3 \(counting from 0\): 7 of its 8 documents came "
                                                          r"back without vectors: 'b', 'c', 'd', 'e', 'f' and 2 more"):
        ray_encode.check_documents(3, list("abcdefgh"), ["a"], 1)
    with pytest.raises(ray_encode.RayEncodingError, match="1 came back more than once: 'a'; 1 documents it did not "
                                                          "hold came back: 'z'; 4 vectors came back for 3 document ids"):
        ray_encode.check_documents(0, ["a", "b"], ["a", "a", "z"], 4)
    with pytest.raises(ray_encode.RayEncodingError, match="came back without vectors: 'b'"):
        ray_encode.check_documents(0, ["a", "b"], ["a", "a"], 2)
    with pytest.raises(ray_encode.RayEncodingError, match="its documents came back in another order"):
        ray_encode.check_documents(0, ["a", "b"], ["b", "a"], 2)


def test_refusals(cluster, corpus, tmp_path, capsys):  # noqa: F811
    assert main(argv(corpus, tmp_path / "gpu", "--ray", "--device", "cuda")) == 2
    assert "error: --device cuda: the Ray cluster has no GPU" in capsys.readouterr().err
    assert main(argv(corpus, tmp_path / "many", "--ray", "--parallel", "3")) == 2
    assert "error: --parallel 3: 3 Ray actors need a CPU each; the cluster has 2" in capsys.readouterr().err
    assert main(argv(corpus, tmp_path / "none", "--ray", "--parallel", "0")) == 2
    assert "error: --parallel must be >= 1 (Ray actors), got 0" in capsys.readouterr().err


def test_plan_fits_the_nodes():
    class Cluster:  # the two calls plan_actors makes
        def __init__(self, cpus: list[int], gpus: int = 0) -> None:
            self.cpus, self.gpus = cpus, gpus

        def cluster_resources(self):
            return {"CPU": float(sum(self.cpus)), "GPU": float(self.gpus)}

        def nodes(self):
            return [{"Alive": True, "Resources": {"CPU": float(cpus)}} for cpus in self.cpus]

    plan = ray_encode.plan_actors(Cluster([16, 8]), "cpu")
    assert (plan.actors, plan.threads, plan.options["num_cpus"]) == (2, 8, 8)  # one per node, fits the smaller
    assert ray_encode.plan_actors(Cluster([3, 3]), "cpu", 3).threads == 1  # 2 threads would place only 2 actors
    assert ray_encode.plan_actors(Cluster([4]), "cpu", 2).threads == 2
    plan = ray_encode.plan_actors(Cluster([8, 8], gpus=4), "cuda")
    assert (plan.actors, plan.threads, plan.options["num_gpus"]) == (4, None, 1)
    assert plan.options["max_restarts"] == plan.options["max_task_retries"] == ray_encode.RETRIES


def test_without_ray_the_option_says_what_to_install(corpus, tmp_path, capsys, monkeypatch):  # noqa: F811
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as when it is not installed
    assert main(argv(corpus, tmp_path / "out", "--ray")) == 2
    assert 'error: --ray needs Ray: pip install "pyserini-diffret[ray]"' in capsys.readouterr().err
    assert not (tmp_path / "out" / "docid").exists()


def test_importing_the_package_and_the_command_does_not_import_ray():
    code = ("import sys, pyserini_diffret, pyserini_diffret.model, pyserini_diffret.workflow.encode, "
            "pyserini_diffret.workflow.ray_encode; "
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    assert run_python("-c", code).stdout.strip() == "[]"


def _all_cpus_free(ray, seconds: float = 20.0) -> bool:
    """Every CPU of the cluster is free again (actors are ended asynchronously: wait a little)."""
    deadline = time.monotonic() + seconds
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"]:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True
