"""Start-up hook (loaded by ``pyserini_diffret.pth``): plug pyserini-diffret into Pyserini's commands.

It costs one small import at interpreter start and does nothing else: a meta-path finder waits for the
first ``import pyserini``, then calls ``pyserini_diffret.integration.setup()`` (Java set-up, offline guard,
registration of ``--encoder diffret``) just before Pyserini loads. Set ``PYSERINI_DIFFRET_HOOK=0`` to switch
it off.
"""
import os
import sys

ENV_SWITCH = "PYSERINI_DIFFRET_HOOK"


class _PyseriniWatcher:
    """Meta-path finder that only reacts to the top-level ``pyserini`` package."""

    @staticmethod
    def find_spec(fullname, path=None, target=None):
        if fullname != "pyserini":
            return None
        sys.meta_path[:] = [finder for finder in sys.meta_path if finder is not _PyseriniWatcher]
        from pyserini_diffret.integration import setup

        setup()  # configures Java and patches Pyserini as it loads

        return None


def install() -> None:
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in {"0", "false", "no", "off"}:
        return
    if "pyserini" in sys.modules or _PyseriniWatcher in sys.meta_path:
        return
    sys.meta_path.insert(0, _PyseriniWatcher)


install()
