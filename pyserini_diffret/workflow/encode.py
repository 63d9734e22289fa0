"""One pass over a corpus -> impact JsonVectorCollection + dense FAISS folder + multi-vector slot store.

``python -m pyserini_diffret.encode`` takes Pyserini's ``input``/``output``/``encoder`` syntax::

    python -m pyserini_diffret.encode \\
      input   --corpus C --fields title text [--shard-id I --shard-num N] [--skip-invalid] \\
      output  --embeddings OUT [--representations impact dense slots] [--slot-dtype float16] [--overwrite] \\
      encoder --encoder diffret --batch-size 32 --device cpu [--max-length N] [--parallel N] [--ray [ADDRESS]]

    python -m pyserini_diffret.encode merge --inputs OUT.0 OUT.1 ... --output OUT

Streaming: documents are read, encoded and appended chunk by chunk (``--chunk-size`` documents,
default 8 batches), so memory does not grow with the corpus (only the set of ids seen, for the
duplicate check). ``--parallel N`` encodes in N worker processes on CPU (``pyserini_diffret.parallel``),
reading a few batches ahead: the batches are those of one process (each chunk sorted by length, then
cut), so the output is the same, byte for byte. ``--ray [ADDRESS]`` encodes those same batches in Ray
actors, on a local Ray cluster or an existing one (``workflow.ray_encode``; Ray is the optional extra
``ray``). Re-running the same command on the same ``OUT`` resumes after the last checkpoint; the result is
byte-identical to an uninterrupted run (see ``store``).
``--to-faiss`` is accepted for Pyserini compatibility; every run writes all ``--representations``.

A corpus that gives no document (an empty file, an empty shard, or every record skipped as invalid) is
an error: nothing is written as complete, the command exits non-zero.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from pyserini_diffret.core.devices import canonical_device
from pyserini_diffret.core.representations import REPRESENTATIONS, Representations
from pyserini_diffret.core.text import DEFAULT_MAX_CHARS, stored_contents
from pyserini_diffret.model import length_batches
from pyserini_diffret.parallel import encode_batches, worker_count
from pyserini_diffret.workflow.collection import (
    CorpusReader, InputError, Position, count_records, shard_range,
)
from pyserini_diffret.workflow.store import (
    SLOT_DTYPES, STORE_FORMAT, StorePaths, StoreWriter, check_unlocked, cleanup, locks_output, merge_stores,
    read_checkpoint, read_docids, read_manifest,
)

CHUNK_BATCHES = 8
WRITER_COUNTS = ("encoded", "written", "empty_sparse")  # counted when a chunk is written, the rest when read


@dataclass
class EncodeResult:
    output: Path
    manifest: dict[str, Any]
    resumed_from: int = 0  # documents already done when this run started
    encoded_now: int = 0  # documents encoded by this run (0 when it found the folder complete)
    seconds: float = 0.0
    already_complete: bool = False
    accounting: dict[str, int] = field(default_factory=dict)

    @property
    def accounting_line(self) -> str:
        return accounting_line(self.accounting)


def accounting_line(counts: dict[str, int]) -> str:
    get = lambda name: counts.get(name, 0)  # noqa: E731
    return (f"accounting: read {get('read')}, encoded {get('encoded')}, written {get('written')}, "
            f"empty sparse vectors {get('empty_sparse')}, skipped {get('skipped')} "
            f"(empty texts {get('empty')}, missing fields {get('missing_fields')}, clipped {get('clipped')})")


def check_accounting(counts: dict[str, int]) -> None:
    if counts.get("read", 0) != counts.get("encoded", 0) + counts.get("skipped", 0):
        raise RuntimeError(f"lost documents: {accounting_line(counts)}")
    if counts.get("written", 0) != counts.get("encoded", 0):
        raise RuntimeError(f"lost documents: {accounting_line(counts)}")


def _model_identity(model) -> dict[str, Any]:
    config = dataclasses.asdict(model.config)
    return {"source": str(model.source), "runtime": getattr(model.runtime, "name", "?"),
            "config": config, "hidden_size": int(model.hidden_size)}


def _fingerprint(files: Sequence[Path]) -> list[list]:
    return [[str(p.resolve()), p.stat().st_size, int(p.stat().st_mtime)] for p in files]


@locks_output  # one writer per output folder, for the whole run (store.OutputLock)
def encode_corpus(corpus: str | os.PathLike, output: str | os.PathLike, model, *, fields: Sequence[str] | None = None,
                  use_titles: bool = True, docid_field: str | None = None, delimiter: str = "\n", shard_id: int = 0,
                  shard_num: int = 1, batch_size: int = 32, chunk_size: int | None = None,
                  representations: Sequence[str] = REPRESENTATIONS, slot_dtype: str = "float32",
                  max_chars: int | None = DEFAULT_MAX_CHARS, skip_invalid: bool = False, overwrite: bool = False,
                  progress: bool = True, device: str = "cpu", parallel: int | None = None, ray: str | None = None,
                  log: Callable[[str], None] = print) -> EncodeResult:
    """Encode ``corpus`` (one shard of it) into ``output``; resumes a partial run of the same settings.

    ``parallel``: worker processes that encode (CPU only; None: this process); the output does not depend on it.
    ``ray``: encode in Ray actors instead (``workflow.ray_encode``): ``""`` on a local cluster (or the one this
    process is connected to), else on the cluster at that address; ``parallel`` is then the number of actors
    (None: one per GPU with a CUDA ``device``, else one per node). ``model`` itself then only needs to be on CPU.
    """
    started = time.perf_counter()
    output = Path(output)
    check_parallel(parallel, device, ray)
    reader = CorpusReader(corpus, fields=fields, docid_field=docid_field, delimiter=delimiter,
                          skip_invalid=skip_invalid, max_chars=max_chars)
    chunk_size = chunk_size or batch_size * CHUNK_BATCHES
    if batch_size < 1 or chunk_size < 1:
        raise ValueError("--batch-size and --chunk-size must be >= 1")
    writer = StoreWriter(output, representations, shard_id, slot_dtype)
    settings = {
        "format": STORE_FORMAT,
        "corpus": _fingerprint(reader.files),
        "fields": list(fields) if fields else None,
        "use_titles": use_titles,
        "docid_field": docid_field,
        "delimiter": delimiter,
        "shard_id": shard_id,
        "shard_num": shard_num,
        "batch_size": batch_size,
        "chunk_size": chunk_size,
        "representations": list(writer.representations),
        "slot_dtype": slot_dtype,
        "max_chars": max_chars,
        "skip_invalid": skip_invalid,
        "device": device,
        "model": _model_identity(model),
    }
    digest = hashlib.sha256(repr(sorted(settings.items())).encode()).hexdigest()[:16]
    output.mkdir(parents=True, exist_ok=True)

    manifest = read_manifest(output)
    if manifest is not None and not overwrite:
        if manifest.get("settings_digest") != digest:
            raise ValueError(f"{output} already holds a complete encoding made with other settings; "
                             "use another folder or pass --overwrite")
        cleanup(writer.paths)
        log(f"{output}: already complete ({manifest['accounting'].get('written', 0)} documents); nothing to do")
        return EncodeResult(output, manifest, already_complete=True, accounting=manifest["accounting"],
                            seconds=time.perf_counter() - started)

    checkpoint = None if overwrite else read_checkpoint(output)
    if checkpoint is not None and checkpoint.get("settings_digest") != digest:
        raise ValueError(f"{output} holds a partial encoding made with other settings (corpus, model, batch size, "
                         "shard...); re-run it with the same settings to resume, or pass --overwrite to start again")
    total = count_records(reader.files)
    start, end = shard_range(total, shard_id, shard_num)
    if total == 0:
        raise InputError(corpus, None, "no records (the corpus is empty); nothing was encoded")
    if start == end:
        raise InputError(corpus, None, f"shard {shard_id} of {shard_num} has no records (the corpus has {total}); "
                                       "nothing was encoded")
    if checkpoint is not None:
        writer.resume(checkpoint["sizes"])
        position = Position(**checkpoint["position"])
        reader.stats.counts.update(checkpoint["counts"])
        for docid in read_docids(writer.paths.docids):
            reader.remember(docid)
        counts = reader.stats.counts
        log(f"resuming {output} at document {position.record - start} of {end - start}")
    else:
        writer.start_fresh()
        position = reader.skip_to(start)
        counts = reader.stats.counts
        for name in ("read", "encoded", "written", "empty_sparse", "skipped", "empty", "missing_fields", "clipped"):
            counts.setdefault(name, 0)
        writer.checkpoint(_state(digest, position, counts))
    resumed_from = position.record - start
    encoded_before = counts["encoded"]

    k, dim = model.k_doc, int(model.hidden_size)
    bar = _progress(end - start, resumed_from, progress)
    chunks = _read_chunks(reader, position, end, chunk_size)
    batched = _batched_chunks(model, chunks, use_titles, batch_size)
    if ray is None:
        encoded = _encode_chunks(model, batched, parallel)
    else:  # the same chunks, batches, writer and checkpoints; only the encoding moves to Ray actors
        from pyserini_diffret.workflow.ray_encode import encode_chunks_on_ray  # noqa: PLC0415 - Ray is optional

        encoded = encode_chunks_on_ray(model, batched, address=ray, device=device, actors=parallel)
    try:
        done = 0  # records of this run's chunks written (for the progress bar)
        for chunk, reps in encoded:
            _write_chunk(writer, chunk, reps, use_titles, counts)
            # Reading runs ahead of writing: the reader's counts as they were at the chunk's end.
            state = {**chunk.read_counts, **{name: counts[name] for name in WRITER_COUNTS}}
            writer.checkpoint(_state(digest, chunk.end, state))
            bar.update(chunk.end.record - position.record - done)
            done = chunk.end.record - position.record
    finally:
        encoded.close()  # stops the workers, if any
        chunks.close()  # closes the file being read
        bar.close()
        writer.close()
    check_accounting(counts)
    if counts.get("written", 0) == 0:  # every record was skipped as invalid
        writer.paths.checkpoint.unlink(missing_ok=True)  # nothing worth resuming: a corrected corpus starts afresh
        raise InputError(corpus, None, f"all {counts.get('read', 0)} records{' of the shard' if shard_num > 1 else ''} "
                                       "were skipped as invalid (--skip-invalid); nothing was encoded")
    accounting = {name: int(counts.get(name, 0)) for name in
                  ("read", "encoded", "written", "empty_sparse", "skipped", "empty", "missing_fields", "clipped")}
    manifest = {
        "format": STORE_FORMAT,
        "complete": True,
        "settings_digest": digest,
        "model": settings["model"]["source"],
        "model_config": settings["model"]["config"],
        "representations": list(writer.representations),
        "dim": dim,
        "k_doc": k,
        "slot_dtype": slot_dtype,
        "shard_id": shard_id,
        "shard_num": shard_num,
        "records": [start, end],
        "corpus": [str(p) for p in reader.files],
        "accounting": accounting,
    }
    writer.finalize(manifest, accounting["written"], dim, k)
    return EncodeResult(output, manifest, resumed_from=resumed_from, encoded_now=accounting["encoded"] - encoded_before,
                        accounting=accounting,
                        seconds=time.perf_counter() - started)


def _state(digest: str, position: Position, counts) -> dict[str, Any]:
    return {"settings_digest": digest, "position": position.to_dict(), "counts": dict(counts)}


def check_parallel(parallel: int | None, device: str, ray: str | None = None) -> None:
    """``--parallel`` checked before anything is loaded or read (with ``--ray``: the number of actors)."""
    if isinstance(parallel, int) and not isinstance(parallel, bool) and parallel < 1:
        raise ValueError(f"--parallel must be >= 1 ({'worker processes' if ray is None else 'Ray actors'}), "
                         f"got {parallel}")
    if ray is None and worker_count(parallel) > 1 and canonical_device(device) != "cpu":
        raise ValueError(f"--parallel {parallel} runs worker processes on CPU only; with --device {device} "
                         "use --parallel 1 (one GPU session per process), or --ray (Ray actors, one per GPU)")


@dataclass
class _Chunk:
    docs: list  # the chunk's documents (records skipped as invalid are not here)
    end: Position  # the reader's position after the chunk's last record
    read_counts: dict[str, int]  # the reader's counts at ``end``
    order: np.ndarray  # length-sorted order of ``docs`` (``length_batches``)
    batches: int  # how many batches encode ``docs``


def _read_chunks(reader: CorpusReader, position: Position, end: int,
                 chunk_size: int) -> Iterator[tuple[list, Position, dict[str, int]]]:
    """``(documents, position after them, reader counts there)`` per ``chunk_size`` documents.

    A last chunk may hold no documents (its records were all skipped): its checkpoint still moves on.
    """
    chunk: list = []
    chunk_end = position
    for doc, after in reader.read(position, end):
        chunk_end = after
        if doc is not None:
            chunk.append(doc)
        if len(chunk) >= chunk_size:
            yield chunk, chunk_end, dict(reader.stats.counts)
            position, chunk = chunk_end, []
    if chunk or chunk_end.record != position.record:
        yield chunk, chunk_end, dict(reader.stats.counts)


def _batched_chunks(model, chunks: Iterator[tuple[list, Position, dict[str, int]]], use_titles: bool,
                    batch_size: int) -> Iterator[tuple[_Chunk, list[str], list[np.ndarray]]]:
    """Each chunk with its documents' texts and the batches (index arrays into them) that encode it.

    The batches are those of ``model.encode_documents(chunk, batch_size=batch_size)`` (int8 dynamic
    quantisation depends on a batch's make-up), whoever encodes them (this process, workers, Ray actors).
    """
    for docs, chunk_end, read_counts in chunks:
        titles = [doc.title for doc in docs] if use_titles else None
        texts = model.document_texts([doc.text for doc in docs], titles)
        order, parts = length_batches(texts, batch_size)
        parts = parts or [order]  # an empty chunk sends one empty batch, to keep its place in line
        yield _Chunk(docs, chunk_end, read_counts, order, len(parts)), texts, parts


def _encode_chunks(model, batched: Iterator[tuple[_Chunk, list[str], list[np.ndarray]]],
                   parallel: int | None) -> Iterator[tuple[_Chunk, Representations]]:
    """Each chunk with its documents' representations, in order; batches are streamed across chunks so that
    workers never wait for a chunk to be written."""
    pending: deque[_Chunk] = deque()  # chunks whose batches were handed out, oldest first

    def batches() -> Iterator[list[str]]:
        for chunk, texts, parts in batched:
            pending.append(chunk)
            for part in parts:
                yield [texts[i] for i in part]

    done: list[Representations] = []
    with contextlib.closing(encode_batches(model, batches(), "document", workers=parallel)) as results:
        for reps in results:
            done.append(reps)
            if len(done) == pending[0].batches:
                chunk = pending.popleft()
                yield chunk, Representations.concat(done).take(np.argsort(chunk.order, kind="stable"))
                done = []


def _write_chunk(writer: StoreWriter, chunk: _Chunk, reps: Representations, use_titles: bool, counts) -> None:
    docs = chunk.docs
    if not docs:
        return
    contents = [stored_contents(doc.title if use_titles else None, doc.text) for doc in docs]
    writer.append([doc.docid for doc in docs], contents, reps)
    counts["encoded"] += len(docs)
    counts["written"] += len(docs)
    counts["empty_sparse"] += sum(1 for ids in reps.term_ids if not len(ids))


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, initial: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm  # noqa: PLC0415

    return tqdm(total=total, initial=initial, unit="doc", desc="encoding", file=sys.stderr, mininterval=1.0,
                dynamic_ncols=True, smoothing=0.1)


# -- command line --------------------------------------------------------------------------------------
COMMANDS = ("input", "output", "encoder")


def _parsers() -> dict[str, argparse.ArgumentParser]:
    parsers = {}
    p = parsers["input"] = argparse.ArgumentParser(prog="input", add_help=False)
    p.add_argument("--corpus", required=True, help="a JSON-lines file, or a folder of them")
    p.add_argument("--fields", nargs="+", default=None,
                   help="fields of each record, in order (default: title and text, or contents)")
    p.add_argument("--docid-field", default=None, help="id field (default: id, _id or docid)")
    p.add_argument("--delimiter", default="\n", help="splits 'contents' into --fields (Pyserini's rule)")
    p.add_argument("--shard-id", type=int, default=0)
    p.add_argument("--shard-num", type=int, default=1)
    p.add_argument("--skip-invalid", action="store_true",
                   help="skip (and count) malformed records instead of stopping at the first one")
    p.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS,
                   help="cut longer texts to this many characters before encoding (counted as clipped); 0: never")
    p = parsers["output"] = argparse.ArgumentParser(prog="output", add_help=False)
    p.add_argument("--embeddings", required=True, help="output folder")
    p.add_argument("--to-faiss", action="store_true", help="accepted for Pyserini compatibility (always written)")
    p.add_argument("--representations", nargs="+", choices=REPRESENTATIONS, default=list(REPRESENTATIONS))
    p.add_argument("--slot-dtype", choices=SLOT_DTYPES, default="float32")
    p.add_argument("--overwrite", action="store_true", help="start again instead of resuming")
    p = parsers["encoder"] = argparse.ArgumentParser(prog="encoder", add_help=False)
    p.add_argument("--encoder", default="diffret", help="'diffret' (embedded default) or a model folder")
    p.add_argument("--encoder-class", choices=["diffret"], default=None)
    p.add_argument("--fields", nargs="+", default=None, help="fields to encode (leave out 'title' to ignore titles)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--chunk-size", type=int, default=None, help="documents per checkpoint (default 8 batches)")
    p.add_argument("--max-length", type=int, default=None, help="document text tokens (default: the model's)")
    p.add_argument("--dimension", type=int, default=None, help="checked against the model's vector size")
    p.add_argument("--device", default="cpu")
    p.add_argument("--parallel", type=int, default=None, metavar="N",
                   help="encode in N worker processes on CPU, each with its share of the cores (same output); "
                        "with --ray: N Ray actors (default: one per GPU with --device cuda, else one per node)")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="encode in Ray actors (same output): on a local Ray cluster, or on the one at ADDRESS "
                        "(HEAD:6379); needs the extra: pip install \"pyserini-diffret[ray]\"")
    p.add_argument("--fp16", action="store_true", help="accepted and ignored (the model's dtype is used)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return parsers


def _split(argv: Sequence[str]) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for token in argv:
        if token in COMMANDS:
            current = sections.setdefault(token, [])
        elif current is None:
            raise SystemExit(f"expected one of {', '.join(COMMANDS)} before {token!r}")
        else:
            current.append(token)
    return sections


USAGE = __doc__


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        for parser in _parsers().values():
            print(parser.format_help())
        return 0
    if argv[0] == "merge":
        parser = argparse.ArgumentParser(prog="python -m pyserini_diffret.encode merge")
        parser.add_argument("--inputs", nargs="+", required=True, help="complete shard folders, in order")
        parser.add_argument("--output", required=True)
        parser.add_argument("--overwrite", action="store_true")
        args = parser.parse_args(argv[1:])
        try:
            manifest = merge_stores(args.inputs, args.output, overwrite=args.overwrite)
        except (ValueError, OSError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(accounting_line(manifest["accounting"]))
        return 0
    sections = _split(argv)
    for required in ("input", "output"):
        if required not in sections:
            raise SystemExit(f"the '{required}' section is required (see --help)")
    parsers = _parsers()
    args = {name: parsers[name].parse_args(sections.get(name, [])) for name in COMMANDS}
    inp, out, enc = args["input"], args["output"], args["encoder"]
    fields = inp.fields
    use_titles = True
    if enc.fields is not None:
        if fields is not None and not set(enc.fields) <= set(fields):
            raise SystemExit(f"encoder --fields {enc.fields} must be among input --fields {fields}")
        use_titles = "title" in enc.fields
        if fields is None:
            fields = enc.fields if use_titles else None
    try:
        from pyserini_diffret.shared import shared_model  # noqa: PLC0415

        check_unlocked(out.embeddings)  # fail before loading the model if another process writes the folder
        check_parallel(enc.parallel, enc.device, enc.ray)
        if enc.ray is not None:
            from pyserini_diffret.workflow.ray_encode import require_ray  # noqa: PLC0415 - Ray is optional

            require_ray()
        # With --ray the actors load the model on --device; here it gives settings and vocabulary, on CPU.
        model = shared_model(enc.encoder, enc.device if enc.ray is None else "cpu", batch_size=enc.batch_size)
        if enc.max_length is not None:
            model.set_lengths(document=enc.max_length)
        if enc.dimension is not None and enc.dimension != model.hidden_size:
            raise ValueError(f"--dimension {enc.dimension} does not match the model's vector size {model.hidden_size}")
        print(f"model {model.source}: {model.config.backbone}, hidden {model.hidden_size}, K_doc {model.k_doc}, "
              f"document length {model.prompts.max_text_length('document', model.k_doc)} tokens", file=sys.stderr)
        result = encode_corpus(
            inp.corpus, out.embeddings, model, fields=fields, use_titles=use_titles, docid_field=inp.docid_field,
            delimiter=inp.delimiter.replace("\\n", "\n"), shard_id=inp.shard_id, shard_num=inp.shard_num,
            batch_size=enc.batch_size, chunk_size=enc.chunk_size, representations=out.representations,
            slot_dtype=out.slot_dtype, max_chars=inp.max_chars or None, skip_invalid=inp.skip_invalid,
            overwrite=out.overwrite, progress=not enc.quiet, device=enc.device, parallel=enc.parallel, ray=enc.ray,
            log=lambda message: print(message, file=sys.stderr),
        )
    except (InputError, ValueError, FileNotFoundError, NotADirectoryError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    paths = StorePaths(result.output, inp.shard_id, out.slot_dtype)
    done = result.accounting.get("written", 0)
    if result.already_complete:
        print(f"{result.output}: already complete ({done} documents); nothing encoded")
    else:
        new = result.encoded_now
        rate = f", {new / result.seconds:.1f} docs/s" if new > 0 and result.seconds > 0 else ""
        resumed = f" (resumed after {result.resumed_from})" if result.resumed_from else ""
        print(f"encoded {new} documents{resumed} -> {result.output} in {result.seconds:.1f} s{rate}")
    if "impact" in out.representations:
        print(f"  impact vectors: {paths.impact.parent}  (python -m pyserini.index.lucene --collection "
              "JsonVectorCollection --input ... --impact --pretokenized)")
    if "dense" in out.representations:
        print(f"  dense FAISS:    {paths.dense_dir}")
    if "slots" in out.representations:
        print(f"  slot vectors:   {paths.slots_dir}")
    print(result.accounting_line)
    return 0
