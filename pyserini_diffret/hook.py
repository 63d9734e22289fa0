"""``python -m pyserini_diffret.hook install|uninstall|status``: manage the start-up hook by hand.

``pip install .`` places ``pyserini_diffret.pth`` itself; editable installs (``pip install -e .``) do not,
so development environments run ``install`` once (``make`` does).
"""
from __future__ import annotations

import argparse
import sys
import sysconfig
from pathlib import Path

PTH_NAME = "pyserini_diffret.pth"
PTH_LINE = "import pyserini_diffret_hook\n"


def site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyserini_diffret.hook", description=__doc__)
    parser.add_argument("action", choices=["install", "uninstall", "status"])
    args = parser.parse_args(argv)
    pth = site_packages() / PTH_NAME
    if args.action == "install":
        pth.write_text(PTH_LINE, encoding="utf-8")
        print(f"start-up hook installed: {pth}")
    elif args.action == "uninstall":
        if pth.exists():
            pth.unlink()
            print(f"start-up hook removed: {pth}")
        else:
            print(f"no start-up hook at {pth}")
    else:
        state = "installed" if pth.exists() else "not installed"
        print(f"start-up hook {state}: {pth}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
