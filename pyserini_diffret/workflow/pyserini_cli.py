"""Run one of Pyserini's own commands with pyserini-diffret registered, without the start-up hook.

``python -m pyserini_diffret.search_lucene ARGS`` is ``python -m pyserini.search.lucene ARGS`` with
``--encoder diffret`` available, Java 21+ selected and the offline guard on, whether or not the
``.pth`` start-up hook is installed (or switched off with ``PYSERINI_DIFFRET_HOOK=0``).
"""
from __future__ import annotations

import runpy
import sys
from typing import Sequence

COMMANDS = {
    "encode": "pyserini.encode",
    "index.lucene": "pyserini.index.lucene",
    "search.lucene": "pyserini.search.lucene",
    "search.faiss": "pyserini.search.faiss",
    "search.hybrid": "pyserini.search.hybrid",
    "fusion": "pyserini.fusion",
    "eval.trec_eval": "pyserini.eval.trec_eval",
}


def run_pyserini(module: str, argv: Sequence[str] | None = None) -> int:
    from pyserini_diffret.integration import setup  # noqa: PLC0415

    setup()  # Java, offline guard and registration before Pyserini loads

    argv = list(sys.argv[1:] if argv is None else argv)
    sys.argv = [module, *argv]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        names = ", ".join(COMMANDS)
        print(f"usage: python -m pyserini_diffret.cli COMMAND ARGS...  (COMMAND: {names})\n"
              "runs `python -m pyserini.COMMAND ARGS...` with --encoder diffret registered")
        return 0 if argv[:1] in ([], ["-h"], ["--help"]) else 2
    return run_pyserini(COMMANDS[argv[0]], argv[1:])
