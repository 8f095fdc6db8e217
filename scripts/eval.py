"""Reproduce a paper table: python scripts/eval.py --config configs/paper/<table>.yaml [key=value ...] (= csrv2 eval)."""

import sys

from csrv2.cli import main

if __name__ == "__main__":
    main(["eval", *sys.argv[1:]])
