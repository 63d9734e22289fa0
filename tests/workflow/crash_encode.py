"""``python -m tests.workflow.crash_encode EVENT:N ENCODE-ARGS...`` (from the repository root): runs
``python -m pyserini_diffret.encode ENCODE-ARGS...`` and ends the process abruptly (``os._exit``: no clean-up,
no further checkpoint) at the N-th EVENT, with exit status ``EXIT_STATUS``. For the kill-and-resume tests;
the product code knows nothing of it (the store's functions are wrapped here).

Events:

- ``append``: a chunk's data written to the output files (and flushed to the OS), not yet checkpointed;
- ``checkpoint``: the data synced to disk, ``.checkpoint.json`` about to be replaced (it is not);
- ``finalize``: while finalising, an id list copied (the first: ``dense/docid``, after the FAISS index),
  the rest and ``encode.json`` not yet written.

A run that never reaches the N-th event finishes normally (status 0), which the tests treat as a failure.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from pyserini_diffret.workflow import store

EXIT_STATUS = 86


def install(event: str, count: int) -> None:
    """Wrap the store function that marks ``event`` so that its ``count``-th call ends the process."""
    calls = 0

    def reached(files=()) -> None:
        nonlocal calls
        calls += 1
        if calls >= count:
            for f in files:
                f.flush()  # what the OS would have received anyway
            os._exit(EXIT_STATUS)

    if event == "append":
        append = store.StoreWriter.append

        def crashing_append(self, *args, **kwargs):
            append(self, *args, **kwargs)
            reached(list(self._files.values()))

        store.StoreWriter.append = crashing_append
    elif event == "checkpoint":
        atomic_write_text = store.atomic_write_text

        def crashing_write(path, text):
            if Path(path).name == store.CHECKPOINT:
                reached()
            atomic_write_text(path, text)

        store.atomic_write_text = crashing_write
    elif event == "finalize":
        copy_atomic = store._copy_atomic

        def crashing_copy(source, target):
            copy_atomic(source, target)
            reached()

        store._copy_atomic = crashing_copy
    else:
        raise SystemExit(f"unknown event {event!r} (append, checkpoint or finalize)")


def main(argv: list[str]) -> int:
    event, _, count = argv[0].partition(":")
    install(event, int(count or 1))
    from pyserini_diffret.integration import setup
    from pyserini_diffret.workflow.encode import main as encode_main

    setup()  # as python -m pyserini_diffret.encode does
    return encode_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
