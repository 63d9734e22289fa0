"""Corpus encoding on a Ray cluster: ``python -m pyserini_diffret.encode ... encoder --ray [ADDRESS]``.

What runs where. The driver (the process that runs the command) reads and checks the corpus, cuts it into
chunks and length-sorted batches, and writes every output, exactly as a run without Ray does
(``encode.encode_corpus``: the same ``CorpusReader`` errors and counts, checkpoints, resume and
``StoreWriter``). Only the encoding moves: each batch goes to one of N Ray actors, each holding one copy of
the model, loaded once with the driver model's ``load_recipe()`` (again after a restart). With a CUDA
``device``, one actor per GPU of the cluster (``num_gpus=1``; Ray gives each its own GPU, so ``cuda:N``
means ``cuda``); on CPU, one actor per node, each reserving and using an equal share of the CPUs that fits
on the smallest node. ``--parallel N`` asks for N actors. The batches are those of one process, so the
output is the same, byte for byte (int8 models included: their numbers depend on a batch's make-up).

Nothing is lost when an actor's process or node dies: Ray restarts the actor (``max_restarts``) and sends
it again the batches it held (``max_task_retries``), up to ``RETRIES`` times; each batch's result is
fetched through its own object reference, so it is written once however often it was computed. Each actor
sends back the ids of the documents it encoded with their vectors: a batch whose ids are not exactly those
sent (a document missing, doubled or foreign) stops the run before its chunk is written
(``RayEncodingError`` naming them); the same command then resumes after the last checkpoint. A batch whose
encoding raises is not retried (it would fail again): the error names it.

Why actors fed by the driver rather than a Ray Data pipeline: Ray Data takes its input from sources that
its own tasks read (``from_items`` holds the whole list in memory first), so the corpus would either be read
and checked in remote read tasks (other error reporting, and chunks cut elsewhere under ``--skip-invalid``,
which changes int8 outputs) or pushed through a queue that Ray cannot replay when a read task dies; read
tasks merge small blocks into large ones (so batches are cut again), and every pipeline run starts its own
actors (windows of the stream would load the model again each time). Here the reader, the batches, the
memory bound (``AHEAD`` batches per actor in flight) and the checkpoints stay those of one process.

Ray is an optional extra (``pip install "pyserini-diffret[ray]"``); this module imports it only when used.
"""
from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter, deque
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from pyserini_diffret.core.config import RetrieverConfig
from pyserini_diffret.core.devices import parse_device
from pyserini_diffret.core.representations import Representations
from pyserini_diffret.registry import packaged_model_dir, registered_names

AHEAD = 2  # batches in flight per actor: one running, one queued, so that an actor never waits for the next
RETRIES = 3  # restarts per actor and retries per batch after an actor died (a crash that repeats ends the run)
SHOWN = 5  # document ids named in an error


class RayEncodingError(RuntimeError):
    """A batch could not be encoded on the Ray cluster, or came back without exactly its documents."""


def require_ray():
    """The ``ray`` module, or a clear error naming the extra to install."""
    try:
        import ray  # noqa: PLC0415 - optional dependency
    except ImportError:
        raise RuntimeError('--ray needs Ray: pip install "pyserini-diffret[ray]"') from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[Any]:
    """Ray, connected: to ``address``, or for ``""``/None by Ray's own rule (``RAY_ADDRESS``, else the cluster
    last started on this machine with ``ray start``, else a new local one). A connection this process already
    has is used as it is and left open; one made here is closed at the end."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        ray.init(address=address or None)
    except (ConnectionError, ray.exceptions.RayError) as error:
        where = f"at {address}" if address else "(Ray's default: RAY_ADDRESS, else this machine's)"
        raise RuntimeError(f"--ray: could not connect to the Ray cluster {where}: {error} (is it running? `ray "
                           "status` on its head; a cluster with token authentication also needs RAY_AUTH_MODE=token "
                           "and its token here)") from error
    try:
        yield ray
    finally:
        ray.shutdown()


@dataclasses.dataclass(frozen=True)
class ActorPlan:
    actors: int
    options: dict[str, Any]  # Ray actor options: resources and fault tolerance
    threads: int | None  # CPU threads per actor (None on a GPU: the runtime's default)


def plan_actors(ray, device: str, actors: int | None = None) -> ActorPlan:
    """How many actors, with which resources, for ``device`` on the connected cluster (``actors``: asked for)."""
    retries = {"max_restarts": RETRIES, "max_task_retries": RETRIES}
    resources = ray.cluster_resources()
    if parse_device(device)[0] == "cuda":
        gpus = int(resources.get("GPU", 0))
        if gpus < 1:
            raise ValueError(f"--device {device}: the Ray cluster has no GPU (its resources: CPU "
                             f"{resources.get('CPU', 0):g}); use --device cpu or add GPU nodes")
        count = actors or gpus
        if count > gpus:
            raise ValueError(f"--parallel {count}: {count} Ray actors need one GPU each; the cluster has {gpus}")
        return ActorPlan(count, {"num_gpus": 1, "num_cpus": 1, **retries}, None)
    nodes = [int(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node.get("Alive")]
    nodes = [cpus for cpus in nodes if cpus >= 1]
    if not nodes:
        raise ValueError("the Ray cluster has no node with a CPU")
    count = actors or len(nodes)
    if count > sum(nodes):
        raise ValueError(f"--parallel {count}: {count} Ray actors need a CPU each; the cluster has {sum(nodes)}")
    # The largest equal share that still places all ``count`` actors on the nodes as they are.
    threads = max(1, min(min(nodes), sum(nodes) // count))
    while sum(cpus // threads for cpus in nodes) < count:
        threads -= 1
    return ActorPlan(count, {"num_cpus": threads, **retries}, threads)


def actor_recipe(model, device: str, threads: int | None) -> tuple[Callable[..., Any], dict[str, Any]]:
    """``load_model`` and its arguments for an actor: the driver's model, on ``device``."""
    loader, arguments = model.load_recipe()
    arguments["device"] = parse_device(device)[0]  # Ray gives a GPU actor its own GPU, seen as cuda:0
    # A registered model travels by name, so that each node loads the copy installed there.
    path = Path(arguments["name_or_path"]).resolve()
    for name in registered_names():
        if packaged_model_dir(name).resolve() == path:
            arguments["name_or_path"] = name
    if threads is not None and getattr(model.runtime, "name", "") == "onnx":
        arguments["threads"] = threads  # a torch actor sets torch's own thread count instead
    return loader, arguments


class _Encoder:
    """A Ray actor: loads the model once (again after a restart), then encodes batches of documents."""

    def __init__(self, loader: Callable[..., Any], arguments: dict[str, Any], runtime: str, threads: int | None,
                 config: RetrieverConfig) -> None:
        if runtime == "torch" and threads is not None:
            import torch  # noqa: PLC0415

            torch.set_num_threads(threads)
        self.model = loader(**arguments)
        if self.model.config != config:
            changed = sorted(f.name for f in dataclasses.fields(config)
                             if getattr(self.model.config, f.name) != getattr(config, f.name))
            raise RuntimeError(f"the model loaded on this node differs from the driver's in settings "
                               f"{', '.join(changed)}")

    def encode(self, docids: list[str], texts: list[str]) -> tuple[list[str], Representations]:
        reps = self.model.encode(texts, "document", batch_size=max(1, len(texts)))
        return docids, dataclasses.replace(reps, vocabulary=None)  # the driver has the vocabulary


def encode_chunks_on_ray(model, batched: Iterator[tuple[Any, list[str], list[np.ndarray]]], *, address: str | None,
                         device: str, actors: int | None = None) -> Iterator[tuple[Any, Representations]]:
    """``encode._encode_chunks`` on Ray actors: each chunk with its documents' representations, in order.

    ``batched``: ``encode._batched_chunks``, each chunk (its ``docs`` with their ids) with its texts and its
    batches. Ray is connected, and the actors started, when the first chunk is asked for; they are ended
    when the stream ends, fails or is closed.
    """
    with ray_session(address) as ray:
        plan = plan_actors(ray, device, actors)
        loader, arguments = actor_recipe(model, device, plan.threads)
        encoder = ray.remote(_Encoder).options(**plan.options)
        runtime = getattr(model.runtime, "name", "")
        handles = [encoder.remote(loader, arguments, runtime, plan.threads, model.config) for _ in range(plan.actors)]
        try:
            yield from _stream(ray, handles, model, batched)
        finally:
            for handle in handles:
                ray.kill(handle)  # also ends actors that a failed or closed run left busy


def _stream(ray, handles: list, model,
            batched: Iterator[tuple[Any, list[str], list[np.ndarray]]]) -> Iterator[tuple[Any, Representations]]:
    pending: deque = deque()  # chunks whose batches were handed out, oldest first

    def batches() -> Iterator[tuple[list[str], list[str]]]:
        for chunk, texts, parts in batched:
            pending.append(chunk)
            for part in parts:
                yield [chunk.docs[i].docid for i in part], [texts[i] for i in part]

    source = batches()
    held = [0] * len(handles)  # per actor: batches sent and not yet taken back
    flight: deque[tuple[int, int, list[str], Any]] = deque()  # (batch number, actor, ids, result), oldest first
    sent = 0
    done: list[Representations] = []
    while True:
        while len(flight) < AHEAD * len(handles) and (batch := next(source, None)) is not None:
            actor = min(range(len(handles)), key=held.__getitem__)
            docids, texts = batch
            flight.append((sent, actor, docids, handles[actor].encode.remote(docids, texts)))
            held[actor] += 1
            sent += 1
        if not flight:
            return
        number, actor, docids, result = flight.popleft()
        held[actor] -= 1
        got, reps = _receive(ray, result, number, docids, model.source)
        check_documents(number, docids, got, len(reps))
        done.append(dataclasses.replace(reps, vocabulary=model.vocabulary))
        if len(done) == pending[0].batches:
            chunk = pending.popleft()
            yield chunk, Representations.concat(done).take(np.argsort(chunk.order, kind="stable"))
            done = []


def _receive(ray, result, number: int, docids: list[str], source: str) -> tuple[list[str], Representations]:
    """What an actor sent back for batch ``number``, or ``RayEncodingError`` naming the batch and the cause."""
    where = f"batch {number} (counting from 0; {len(docids)} documents" + \
        (f", the first {docids[0]!r})" if docids else ")")
    try:
        return ray.get(result)
    except ray.exceptions.RayTaskError as error:  # the encoding raised
        cause = error.cause
        failure = RayEncodingError(f"{where} failed on a Ray actor: {type(cause).__name__}: {cause}")
        failure.add_note(f"Ray's report:\n{error}")
        raise failure from None
    except ray.exceptions.RayActorError as error:
        if error.actor_init_failed:
            reason = str(error).strip().splitlines()[-1]  # the exception that the model's loading raised
            failure = RayEncodingError(f"a Ray actor could not load the model {source}: {reason}")
        else:
            failure = RayEncodingError(f"{where}: the Ray actor encoding it died, and again after each of "
                                       f"{RETRIES} restarts")
        failure.add_note(f"Ray's report:\n{error}")
        raise failure from None


def check_documents(number: int, sent: list[str], got: list[str], rows: int) -> None:
    """Batch ``number`` came back with exactly the documents ``sent``, in order, one row each; else an error
    naming how many and which are missing, doubled or foreign (nothing of the batch's chunk is written)."""
    if got == sent and rows == len(sent):
        return
    received = Counter(got)
    problems = []
    missing = [docid for docid in sent if not received[docid]]
    if missing:
        problems.append(f"{len(missing)} of its {len(sent)} documents came back without vectors: {_few(missing)}")
    doubled = [docid for docid, times in received.items() if times > 1]
    if doubled:
        problems.append(f"{len(doubled)} came back more than once: {_few(doubled)}")
    expected = set(sent)
    foreign = [docid for docid in received if docid not in expected]
    if foreign:
        problems.append(f"{len(foreign)} documents it did not hold came back: {_few(foreign)}")
    if rows != len(got):
        problems.append(f"{rows} vectors came back for {len(got)} document ids")
    if not problems:
        problems.append("its documents came back in another order")
    raise RayEncodingError(f"lost documents on Ray: batch {number} (counting from 0): {'; '.join(problems)}. "
                           "Its chunk was not written; run the same command again to resume from the last checkpoint")


def _few(docids: list[str]) -> str:
    shown = ", ".join(repr(docid) for docid in docids[:SHOWN])
    return shown + (f" and {len(docids) - SHOWN} more" if len(docids) > SHOWN else "")
