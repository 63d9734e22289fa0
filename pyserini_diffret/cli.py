"""``python -m pyserini_diffret.cli COMMAND ARGS``: any of Pyserini's commands (encode, index.lucene,
search.lucene, search.faiss, search.hybrid, fusion, eval.trec_eval) with ``--encoder diffret``
registered, without the start-up hook."""
import sys

from pyserini_diffret.integration import setup
from pyserini_diffret.workflow.pyserini_cli import main

if __name__ == "__main__":
    setup()  # Java 21+, offline guard, --encoder diffret: before Pyserini loads
    sys.exit(main())
