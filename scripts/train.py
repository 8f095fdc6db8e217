"""Train a sparse head: python scripts/train.py --config configs/<run>.yaml [section.key=value ...] (= csrv2 train)."""

import sys

from csrv2.cli import main

if __name__ == "__main__":
    main(["train", *sys.argv[1:]])
