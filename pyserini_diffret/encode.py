"""``python -m pyserini_diffret.encode``: one pass over a corpus writes impact, dense and slot outputs.

See ``pyserini_diffret.workflow.encode`` for the syntax (Pyserini's ``input``/``output``/``encoder``).
"""
import sys

from pyserini_diffret.integration import setup
from pyserini_diffret.workflow.encode import main

if __name__ == "__main__":
    setup()  # Java 21+, offline guard, --encoder diffret: before Pyserini loads
    sys.exit(main())
