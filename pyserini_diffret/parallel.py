"""Encoding a stream of batches, in this process or in worker processes (``DiffRetriever.embed_*``, and the
corpus encoder's ``--parallel``).

``encode_batches(model, batches, side, workers)`` reads ``batches`` (lists of texts) lazily and yields one
``Representations`` per batch, in input order; each batch is encoded as ``model.encode`` encodes it. With
``workers`` N > 1, N processes (``spawn``: no state copied from this one) each load the model again with
``model.load_recipe()`` and ``physical_cores() // N`` threads, and receive batches in turn through their own
queue. At most ``AHEAD`` batches per worker are pending (sent, or done and waiting for an earlier one), so
memory holds a few batches whatever the length of the stream. A failing batch, a worker that cannot load
the model or stops, raises ``WorkerError`` here; the workers are stopped whenever the stream ends, fails,
is closed early or interrupted (Ctrl-C: they ignore SIGINT and are terminated by this process).

Workers run on CPU only: several sessions on one GPU in one machine are the job of a GPU scheduler.
A script that uses workers needs the usual ``if __name__ == "__main__":`` guard (``spawn`` imports it).
"""
from __future__ import annotations

import atexit
import dataclasses
import functools
import multiprocessing
import queue
import signal
import traceback
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from pyserini_diffret.core.devices import canonical_device, physical_cores
from pyserini_diffret.core.representations import Representations

if TYPE_CHECKING:  # the engine's model imports this module, not the other way round
    from pyserini_diffret.core.config import RetrieverConfig

AHEAD = 2  # pending batches per worker: one running, one queued, so that a worker never waits for the next
POLL_SECONDS = 0.5  # how often a waiting side checks that the other is still alive
STOP_SECONDS = 10.0  # how long finished workers get to exit before they are terminated


class WorkerError(RuntimeError):
    """A worker process could not load the model, failed on a batch, or stopped."""


def worker_count(workers: int | None) -> int:
    """``workers`` checked: None means 1 (this process)."""
    if workers is None:
        return 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"parallel must be an integer >= 1 (worker processes), got {workers!r}")
    return workers


def encode_batches(model, batches: Iterable[list[str]], side: str,
                   workers: int | None = None) -> Iterator[Representations]:
    """One ``Representations`` per batch of ``batches``, in order; ``workers`` > 1: in that many processes.

    Arguments are checked now; nothing is read and no process starts before the first result is asked for.
    """
    count = worker_count(workers)
    if count == 1:
        return _in_process(model, batches, side)
    loader, arguments = model.load_recipe()
    device = canonical_device(arguments.get("device"))
    if device != "cpu":
        raise ValueError(f"parallel={count}: worker processes run on CPU only, and this model is on {device}; "
                         "use parallel=1 on a GPU")
    threads = max(1, physical_cores() // count)
    runtime = getattr(model.runtime, "name", "")
    if runtime == "onnx":
        arguments["threads"] = threads  # a torch worker sets torch's own thread count instead
    plan = _Plan(loader, arguments, runtime, threads, model.config, str(model.source))
    return _pooled(plan, count, batches, side, model.vocabulary)


def _in_process(model, batches: Iterable[list[str]], side: str) -> Iterator[Representations]:
    for texts in batches:
        yield model.encode(texts, side, batch_size=max(1, len(texts)))


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What a worker needs to load the parent's model: picklable, sent once at start."""

    loader: Callable[..., Any]
    arguments: dict[str, Any]
    runtime: str
    threads: int
    config: "RetrieverConfig"  # the parent's settings: the worker's model must have the same
    source: str


def _pooled(plan: _Plan, count: int, batches: Iterable[list[str]], side: str, vocabulary) -> Iterator[Representations]:
    pool = _Pool(plan, count)
    try:
        yield from pool.run(batches, side, vocabulary)
    except BaseException:  # an error, an early close (GeneratorExit) or Ctrl-C: stop the workers now
        pool.stop(abort=True)
        raise
    pool.stop(abort=False)


class _Pool:
    def __init__(self, plan: _Plan, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.source = plan.source
        self.results = context.Queue()
        self.tasks = [context.Queue() for _ in range(count)]
        self.processes = [
            context.Process(target=_work, args=(plan, number, self.tasks[number], self.results), daemon=True,
                            name=f"diffret-worker-{number}")
            for number in range(count)
        ]
        self.held: list[dict[int, int]] = [{} for _ in range(count)]  # per worker: batch number -> its size
        self.started: list = []
        self.stopped = False
        # A stream left suspended (Ctrl-C in the caller's loop) is closed only when the interpreter shuts
        # down, too late to stop processes cleanly: stop them at exit instead.
        self._at_exit = functools.partial(self.stop, abort=True)
        atexit.register(self._at_exit)
        try:
            for process in self.processes:
                process.start()
                self.started.append(process)
        except BaseException:
            self.stop(abort=True)
            raise

    def run(self, batches: Iterable[list[str]], side: str, vocabulary) -> Iterator[Representations]:
        source = iter(batches)
        exhausted = False
        sent = returned = 0
        done: dict[int, Representations] = {}
        while True:
            while not exhausted and sent - returned < AHEAD * len(self.processes):
                texts = next(source, None)
                if texts is None:
                    exhausted = True
                    break
                worker = min(range(len(self.processes)), key=lambda w: len(self.held[w]))
                self.tasks[worker].put((sent, side, texts))
                self.held[worker][sent] = len(texts)
                sent += 1
            if returned in done:
                reps = done.pop(returned)
                returned += 1
                yield reps
            elif exhausted and returned == sent:
                return
            else:
                number, reps = self._receive()
                done[number] = dataclasses.replace(reps, vocabulary=vocabulary)

    def _receive(self) -> tuple[int, Representations]:
        """The next finished batch; ``WorkerError`` for a failure reported by a worker or a worker gone."""
        kind, worker, number, payload = self._next_message()
        if kind == "done":
            del self.held[worker][number]
            return number, payload
        pid = self.processes[worker].pid
        if kind == "failed":
            error = WorkerError(f"worker process {worker} (pid {pid}) could not load the model {self.source}: "
                                f"{payload[1]}")
        else:
            error = WorkerError(f"batch {number} (counting from 0; {self.held[worker][number]} texts) failed in "
                                f"worker process {worker} (pid {pid}): {payload[1]}")
        error.add_note(f"the worker's traceback:\n{payload[0]}")
        raise error

    def _next_message(self) -> tuple:
        while True:
            try:
                return self.results.get(timeout=POLL_SECONDS)
            except queue.Empty:
                pass
            for worker, process in enumerate(self.processes):
                if process.exitcode is None:
                    continue
                try:  # a worker that could not load the model reports why, then exits: read that first
                    return self.results.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    held = ", ".join(map(str, sorted(self.held[worker]))) or "none"
                    raise WorkerError(f"worker process {worker} (pid {process.pid}) stopped unexpectedly (exit code "
                                      f"{process.exitcode}); batches it held (counting from 0): {held}") from None

    def stop(self, abort: bool) -> None:
        """End the workers: asked to finish (``abort=False``, after the last batch) or terminated now."""
        if self.stopped:
            return
        self.stopped = True
        atexit.unregister(self._at_exit)
        if not abort:
            for tasks in self.tasks:
                tasks.put(None)
            for process in self.started:
                process.join(STOP_SECONDS)
        for process in self.started:
            if process.is_alive():
                process.terminate()
        for process in self.started:
            process.join(STOP_SECONDS)
            if process.is_alive():
                process.kill()
                process.join()
        for channel in [*self.tasks, self.results]:
            channel.cancel_join_thread()  # data left for a dead worker must not block this process's exit
            channel.close()
        for process in self.started:
            process.close()


def _work(plan: _Plan, worker: int, tasks, results) -> None:
    """A worker process: load the model, then encode batches until told to stop or the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    try:
        if plan.runtime == "torch":
            import torch  # noqa: PLC0415

            torch.set_num_threads(plan.threads)
        model = plan.loader(**plan.arguments)
        if model.config != plan.config:
            changed = sorted(f.name for f in dataclasses.fields(plan.config)
                             if getattr(model.config, f.name) != getattr(plan.config, f.name))
            raise RuntimeError(f"the model loaded here differs from the parent's in settings {', '.join(changed)}")
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which raises it
        results.put(("failed", worker, None, (traceback.format_exc(), f"{type(error).__name__}: {error}")))
        return
    # From here a worker that exits must not wait to flush results nobody will read (the parent gone or
    # stopping): the parent asks a worker to stop only after it has received every result that worker sent.
    results.cancel_join_thread()
    parent = multiprocessing.parent_process()
    while True:
        try:
            task = tasks.get(timeout=POLL_SECONDS)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                return  # the parent was killed: nobody will read our results
            continue
        if task is None:
            return
        number, side, texts = task
        try:
            reps = model.encode(texts, side, batch_size=max(1, len(texts)))
        except Exception as error:  # noqa: BLE001 - reported to the parent, which raises it
            results.put(("error", worker, number, (traceback.format_exc(), f"{type(error).__name__}: {error}")))
            continue
        # The parent has the vocabulary: do not send its strings with every batch.
        results.put(("done", worker, number, dataclasses.replace(reps, vocabulary=None)))
