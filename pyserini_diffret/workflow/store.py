"""The encoded-corpus folder: written in one streaming pass, checkpointed, resumable, mergeable.

Layout of ``OUT`` (``python -m pyserini_diffret.encode ... output --embeddings OUT``)::

    OUT/impact/part-00000.jsonl   JsonVectorCollection ({"id", "contents", "vector": {token: int}}),
                                  for ``python -m pyserini.index.lucene --collection JsonVectorCollection
                                  --input OUT/impact --impact --pretokenized``
    OUT/dense/index, dense/docid   FAISS IndexFlatIP + ids, Pyserini's layout (``pyserini.search.faiss --index OUT/dense``)
    OUT/slots/vectors.<dtype>      all K_doc slot vectors per document, raw row-major [N, K, H]
    OUT/slots/docid, slots/meta.json
    OUT/docid                      every document id, in order (one a line)
    OUT/encode.json                settings and accounting; present only once the folder is complete

While encoding, every file is only appended to. After each chunk of documents all files are flushed to
disk and ``.checkpoint.json`` (written atomically) records their sizes, the reader's position and the
counts. A restarted run truncates every file back to the sizes of the last checkpoint and goes on from
the recorded position, so a run killed at any point and restarted produces the same bytes as an
uninterrupted one (chunks are cut at the same documents, so batches, padding and numerics match).
Finalising (building the FAISS index from the raw vectors) is idempotent; ``encode.json`` is written
last and marks completion.

One writer per folder: an encode (``encode_corpus``, also the run command's encoding step) and a merge hold
an exclusive ``flock`` on ``OUT/.lock`` from start to finish (``OutputLock``); a second writer fails at
once with an error naming the holder (pid, host, start time, command, kept in that file while it runs).
The kernel releases the lock when its process dies, so a killed run never blocks the next one, which takes
the folder over. Readers do not lock: do not read a folder while it is being written.
"""
from __future__ import annotations

import errno
import fcntl
import functools
import inspect
import json
import os
import shlex
import shutil
import socket
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

import numpy as np

from pyserini_diffret.core.representations import REPRESENTATIONS

SLOT_DTYPES = ("float32", "float16")
CHECKPOINT = ".checkpoint.json"
MANIFEST = "encode.json"
LOCK = ".lock"  # flock target; names its holder while held, empty otherwise
DOCIDS = "docid"
STORE_FORMAT = 1
_VECTOR_CHUNK = 65536


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


# -- one writer per folder ----------------------------------------------------------------------------
class OutputLockedError(ValueError):
    """Another process is writing the output folder."""


_BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


class OutputLock:
    """An exclusive, non-blocking ``flock`` on ``folder/.lock``, held by one process at a time.

    While held, the file names the holder (pid, host, start time, command) for the error a second writer
    gets; released, it is emptied. A process that dies loses the lock with it (the kernel drops it), and
    the next writer takes the folder over and overwrites the stale name. Where the file system does not
    support ``flock`` (some network or FUSE file systems) the run goes on unlocked, with a warning.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK
        self._fd: int | None = None

    def acquire(self) -> "OutputLock":
        if self._fd is not None:
            raise RuntimeError(f"{self.path}: already held by this object")
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in _BUSY:
                owner = _lock_owner(fd)
                os.close(fd)
                raise OutputLockedError(_locked_message(self.folder, owner)) from None
            os.close(fd)
            if error.errno in _UNSUPPORTED:
                warnings.warn(f"{self.path}: the file system does not support locks ({error.strerror}); nothing "
                              "stops a second process from writing this folder at the same time", stacklevel=3)
                return self
            raise
        owner = {"pid": os.getpid(), "host": socket.gethostname(),
                 "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                 "command": shlex.join(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(owner) + "\n").encode("utf-8"), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # no owner named once released (and the same bytes in every finished folder)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def check_unlocked(folder: str | os.PathLike) -> None:
    """Fail now (``OutputLockedError``, naming the holder) if another process writes ``folder``; cheap, for
    commands to call before loading a model. The lock itself is taken later (``OutputLock``)."""
    path = Path(folder) / LOCK
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return  # no lock file (no writer ever), or not ours to read: the real lock decides
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in _BUSY:
            raise OutputLockedError(_locked_message(Path(folder), _lock_owner(fd))) from None
        return
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _lock_owner(fd: int) -> dict[str, Any]:
    """The holder's record; it writes it right after taking the lock, so wait a moment if it is not there yet."""
    deadline = time.monotonic() + 1.0
    while True:
        try:
            data = json.loads(os.pread(fd, 1 << 16, 0).decode("utf-8"))
            if isinstance(data, dict) and "pid" in data:
                return data
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            return {}
        time.sleep(0.02)


def _locked_message(folder: Path, owner: dict[str, Any]) -> str:
    if owner:
        who = (f"pid {owner.get('pid')} on {owner.get('host')}, since {owner.get('started')}: "
               f"{owner.get('command')}")
    else:
        who = "it did not name itself"
    return (f"{folder} is being written by another process ({who}); one writer per folder: wait for it to "
            "finish, or stop it and run again (a run that was stopped or killed is resumed)")


F = TypeVar("F", bound=Callable[..., Any])


def locks_output(function: F) -> F:
    """Decorator: ``function``'s ``output`` argument (a folder) is locked for the whole call (``OutputLock``)."""
    signature = inspect.signature(function)

    @functools.wraps(function)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with OutputLock(signature.bind(*args, **kwargs).arguments["output"]):
            return function(*args, **kwargs)

    return locked  # type: ignore[return-value]


def impact_line(docid: str, contents: str, vector: dict[str, int]) -> str:
    return json.dumps({"id": docid, "contents": contents, "vector": vector}) + "\n"


@dataclass
class StorePaths:
    root: Path
    shard_id: int = 0
    slot_dtype: str = "float32"

    @property
    def impact(self) -> Path:
        return self.root / "impact" / f"part-{self.shard_id:05d}.jsonl"

    @property
    def dense_dir(self) -> Path:
        return self.root / "dense"

    @property
    def dense_vectors(self) -> Path:
        return self.dense_dir / "vectors.float32"

    @property
    def slots_dir(self) -> Path:
        return self.root / "slots"

    @property
    def slot_vectors(self) -> Path:
        return self.slots_dir / f"vectors.{self.slot_dtype}"

    @property
    def docids(self) -> Path:
        return self.root / DOCIDS

    @property
    def checkpoint(self) -> Path:
        return self.root / CHECKPOINT

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST


class StoreWriter:
    """Appends encoded documents to the output files and checkpoints them."""

    def __init__(self, root: str | os.PathLike, representations: Sequence[str] = REPRESENTATIONS,
                 shard_id: int = 0, slot_dtype: str = "float32") -> None:
        unknown = sorted(set(representations) - set(REPRESENTATIONS))
        if unknown or not representations:
            raise ValueError(f"representations must be a non-empty subset of {REPRESENTATIONS}, got {list(representations)}")
        if slot_dtype not in SLOT_DTYPES:
            raise ValueError(f"slot dtype must be one of {SLOT_DTYPES}, got {slot_dtype!r}")
        self.representations = tuple(r for r in REPRESENTATIONS if r in representations)
        self.paths = StorePaths(Path(root), shard_id, slot_dtype)
        self.slot_dtype = slot_dtype
        self._files: dict[str, Any] = {}

    # -- files -------------------------------------------------------------------------------------
    def data_files(self) -> dict[str, Path]:
        files = {"docids": self.paths.docids}
        if "impact" in self.representations:
            files["impact"] = self.paths.impact
        if "dense" in self.representations:
            files["dense"] = self.paths.dense_vectors
        if "slots" in self.representations:
            files["slots"] = self.paths.slot_vectors
        return files

    def generated_paths(self) -> list[Path]:
        """Everything a run of this writer may create (removed by a fresh start)."""
        p = self.paths
        return [p.manifest, p.checkpoint, p.docids, p.impact, p.dense_vectors, p.dense_dir / "index",
                p.dense_dir / "docid", p.slots_dir / "vectors.float32", p.slots_dir / "vectors.float16",
                p.slots_dir / "docid", p.slots_dir / "meta.json"]

    def start_fresh(self) -> None:
        for path in self.generated_paths():
            for candidate in (path, path.with_name(path.name + ".tmp")):
                if candidate.is_file():
                    candidate.unlink()
        self._open(truncate_to=None)

    def resume(self, sizes: dict[str, int]) -> None:
        files = self.data_files()
        if set(sizes) != set(files):
            raise ValueError(f"{self.paths.checkpoint}: records files {sorted(sizes)}, expected {sorted(files)}")
        for name, path in files.items():
            actual = path.stat().st_size if path.exists() else -1
            if actual < sizes[name]:
                raise ValueError(f"{path} is shorter ({actual} bytes) than its checkpoint says ({sizes[name]}); "
                                 "the output folder was changed by something else: start again with --overwrite")
        self._open(truncate_to=sizes)

    def _open(self, truncate_to: dict[str, int] | None) -> None:
        self.close()
        for name, path in self.data_files().items():
            path.parent.mkdir(parents=True, exist_ok=True)
            f = open(path, "r+b" if truncate_to is not None else "w+b")
            if truncate_to is not None:
                f.truncate(truncate_to[name])
                f.seek(truncate_to[name])
            self._files[name] = f

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    # -- writing -----------------------------------------------------------------------------------
    def append(self, docids: Sequence[str], contents: Sequence[str], reps) -> None:
        files = self._files
        files["docids"].write("".join(f"{d}\n" for d in docids).encode("utf-8"))
        if "impact" in files:
            lines = (impact_line(d, c, w) for d, c, w in zip(docids, contents, reps.impact))
            files["impact"].write("".join(lines).encode("utf-8"))
        if "dense" in files:
            files["dense"].write(np.ascontiguousarray(reps.dense, dtype=np.float32).tobytes())
        if "slots" in files:
            files["slots"].write(np.ascontiguousarray(reps.slots, dtype=self.slot_dtype).tobytes())

    def sizes(self) -> dict[str, int]:
        return {name: f.tell() for name, f in self._files.items()}

    def checkpoint(self, state: dict[str, Any]) -> None:
        for f in self._files.values():
            f.flush()
            os.fsync(f.fileno())
        state = dict(state, sizes=self.sizes())
        atomic_write_text(self.paths.checkpoint, json.dumps(state, indent=1, sort_keys=True) + "\n")

    # -- finishing ---------------------------------------------------------------------------------
    def finalize(self, manifest: dict[str, Any], count: int, dim: int, k: int) -> None:
        """Build the FAISS index and the id lists, check sizes, then write ``encode.json`` (last)."""
        self.close()
        p = self.paths
        docids = p.docids.read_text(encoding="utf-8").splitlines()
        if len(docids) != count:
            raise RuntimeError(f"{p.docids}: {len(docids)} ids written, {count} expected")
        if "impact" in self.representations:
            lines = _count_lines(p.impact)
            if lines != count:
                raise RuntimeError(f"{p.impact}: {lines} lines written, {count} expected")
        if "dense" in self.representations:
            expected = count * dim * 4
            if p.dense_vectors.stat().st_size != expected:
                raise RuntimeError(f"{p.dense_vectors}: {p.dense_vectors.stat().st_size} bytes, {expected} expected")
            write_flat_index(p.dense_dir / "index", iter_rows(p.dense_vectors, dim, np.float32), dim)
            _copy_atomic(p.docids, p.dense_dir / "docid")
        if "slots" in self.representations:
            itemsize = np.dtype(self.slot_dtype).itemsize
            expected = count * k * dim * itemsize
            if p.slot_vectors.stat().st_size != expected:
                raise RuntimeError(f"{p.slot_vectors}: {p.slot_vectors.stat().st_size} bytes, {expected} expected")
            meta = {"format": STORE_FORMAT, "count": count, "k": k, "dim": dim, "dtype": self.slot_dtype,
                    "vectors": p.slot_vectors.name}
            atomic_write_text(p.slots_dir / "meta.json", json.dumps(meta, indent=1, sort_keys=True) + "\n")
            _copy_atomic(p.docids, p.slots_dir / "docid")
        atomic_write_text(p.manifest, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        cleanup(p)


def cleanup(paths: StorePaths) -> None:
    """Remove scratch files of a complete folder (safe to repeat)."""
    for path in (paths.dense_vectors, paths.checkpoint):
        if path.exists():
            path.unlink()


def _copy_atomic(source: Path, target: Path) -> None:
    tmp = target.with_name(target.name + ".tmp")
    shutil.copyfile(source, tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, target)


def _count_lines(path: Path) -> int:
    count = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            count += block.count(b"\n")
    return count


def iter_rows(path: Path, width: int, dtype, chunk: int = _VECTOR_CHUNK) -> Iterable[np.ndarray]:
    """Rows of a raw row-major matrix file, ``chunk`` rows at a time (float32)."""
    dtype = np.dtype(dtype)
    row_bytes = width * dtype.itemsize
    with open(path, "rb") as f:
        while True:
            block = f.read(row_bytes * chunk)
            if not block:
                return
            yield np.frombuffer(block, dtype=dtype).reshape(-1, width).astype(np.float32)


def write_flat_index(target: Path, rows: Iterable[np.ndarray], dim: int) -> int:
    """Write a FAISS ``IndexFlatIP`` over ``rows`` (atomically); returns the number of vectors."""
    import faiss  # noqa: PLC0415

    index = faiss.IndexFlatIP(dim)
    for block in rows:
        index.add(np.ascontiguousarray(block, dtype=np.float32))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    faiss.write_index(index, str(tmp))
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, target)
    return index.ntotal


def read_manifest(root: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(root) / MANIFEST
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def read_checkpoint(root: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(root) / CHECKPOINT
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:  # cannot happen with atomic writes; be clear if it does
        raise ValueError(f"{path}: unreadable checkpoint ({error}); start again with --overwrite") from error


def read_docids(path: str | os.PathLike) -> list[str]:
    return Path(path).read_text(encoding="utf-8").splitlines()


# -- merging shards ------------------------------------------------------------------------------------
@locks_output
def merge_stores(inputs: Sequence[str | os.PathLike], output: str | os.PathLike, overwrite: bool = False,
                 log=print) -> dict[str, Any]:
    """Merge complete shard folders (in the order given) into one folder with the same layout."""
    import faiss  # noqa: PLC0415

    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise ValueError("merge needs at least one input folder")
    manifests = []
    for folder in inputs:
        manifest = read_manifest(folder)
        if manifest is None:
            raise ValueError(f"{folder}: not a complete encoded folder (no {MANIFEST}); finish or resume that shard first")
        manifests.append(manifest)
    first = manifests[0]
    for folder, manifest in zip(inputs[1:], manifests[1:]):
        for key in ("model", "representations", "dim", "k_doc", "slot_dtype"):
            if manifest.get(key) != first.get(key):
                raise ValueError(f"{folder}: {key} {manifest.get(key)!r} differs from {inputs[0]}'s {first.get(key)!r}")
    output = Path(output)
    if read_manifest(output) is not None and not overwrite:
        raise ValueError(f"{output} already holds a complete encoded folder; pass --overwrite to replace it")
    output.mkdir(parents=True, exist_ok=True)
    representations = first["representations"]
    dim, k, slot_dtype = first["dim"], first["k_doc"], first["slot_dtype"]
    writer = StoreWriter(output, representations, 0, slot_dtype)
    for path in writer.generated_paths():
        if path.is_file():
            path.unlink()
    p = writer.paths
    seen: dict[str, Path] = {}
    all_ids: list[str] = []
    for folder in inputs:
        ids = read_docids(folder / DOCIDS)  # every complete folder has OUT/docid, whatever it holds
        for docid in ids:
            if docid in seen:
                raise ValueError(f"duplicate id {docid!r}: in {seen[docid]} and {folder}")
            seen[docid] = folder
        all_ids.extend(ids)
    p.root.mkdir(parents=True, exist_ok=True)
    p.docids.write_text("".join(f"{d}\n" for d in all_ids), encoding="utf-8")
    if "impact" in representations:
        p.impact.parent.mkdir(parents=True, exist_ok=True)
        with open(p.impact, "wb") as out:
            for folder in inputs:
                for part in sorted((folder / "impact").glob("part-*.jsonl")):
                    with open(part, "rb") as f:
                        shutil.copyfileobj(f, out, 1 << 20)
    if "dense" in representations:
        p.dense_dir.mkdir(parents=True, exist_ok=True)
        with open(p.dense_vectors, "wb") as out:
            for folder in inputs:
                index = faiss.read_index(str(folder / "dense" / "index"))
                for start in range(0, index.ntotal, _VECTOR_CHUNK):
                    n = min(_VECTOR_CHUNK, index.ntotal - start)
                    out.write(np.ascontiguousarray(index.reconstruct_n(start, n), dtype=np.float32).tobytes())
    if "slots" in representations:
        p.slots_dir.mkdir(parents=True, exist_ok=True)
        with open(p.slot_vectors, "wb") as out:
            for folder in inputs:
                with open(folder / "slots" / f"vectors.{slot_dtype}", "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
    stats: dict[str, int] = {}
    for manifest in manifests:
        for key, value in manifest.get("accounting", {}).items():
            stats[key] = stats.get(key, 0) + value
    merged = dict(first)
    merged.update(accounting=stats, shards=[str(folder) for folder in inputs], shard_id=0, shard_num=1,
                  records=[0, sum(m["records"][1] - m["records"][0] for m in manifests)])
    writer.finalize(merged, len(all_ids), dim, k)
    log(f"merged {len(inputs)} folders, {len(all_ids)} documents -> {output}")
    return merged
