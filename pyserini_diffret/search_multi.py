"""``python -m pyserini_diffret.search_multi``: multi-vector (MaxSim) search over an encoded slot store."""
import sys

from pyserini_diffret.workflow.multivector import main

if __name__ == "__main__":
    sys.exit(main())
