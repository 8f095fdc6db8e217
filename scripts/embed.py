"""Fill the embedding cache: python scripts/embed.py --config configs/<run>.yaml [section.key=value ...] (= csrv2 embed)."""

import sys

from csrv2.cli import main

if __name__ == "__main__":
    main(["embed", *sys.argv[1:]])
