"""``python -m pyserini_diffret.run``: encode, index, search (sparse, dense, multi, hybrid), evaluate.

See ``pyserini_diffret.workflow.run``. ``make demo`` runs ``--output runs/demo --sample`` (or ``--data``).
"""
import sys

from pyserini_diffret.integration import setup
from pyserini_diffret.workflow.run import main

if __name__ == "__main__":
    setup()  # Java 21+, offline guard, --encoder diffret: before Pyserini loads
    sys.exit(main())
