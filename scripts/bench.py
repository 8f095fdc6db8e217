"""Retrieval benchmark: python scripts/bench.py --config configs/bench/retrieval.yaml [key=value ...] (= csrv2 bench)."""

import sys

from csrv2.cli import main

if __name__ == "__main__":
    main(["bench", *sys.argv[1:]])
