"""``python -m pyserini_diffret.fusion``: the paper's hybrid fusion (per-query min-max, weighted sum) of two or
more runs (``--alpha`` for two, ``--weights``: one per run), a grid search for the weights on development
queries (``--grid STEP --qrels``), beside Pyserini's RRF/interpolation (``--method``)."""
import sys

from pyserini_diffret.integration import setup
from pyserini_diffret.workflow.fusion import main

if __name__ == "__main__":
    setup()  # Java 21+, offline guard, --encoder diffret: before Pyserini loads
    sys.exit(main())
