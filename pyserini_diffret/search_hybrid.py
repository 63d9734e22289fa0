"""``python -m pyserini_diffret.search_hybrid``: Pyserini's ``python -m pyserini.search.hybrid`` with ``--encoder diffret`` registered
(works without the start-up hook)."""
import sys

from pyserini_diffret.integration import setup
from pyserini_diffret.workflow.pyserini_cli import COMMANDS, run_pyserini

if __name__ == "__main__":
    setup()  # Java 21+, offline guard, --encoder diffret: before Pyserini loads
    sys.exit(run_pyserini(COMMANDS["search.hybrid"]))
