"""Reproduce a paper table: train every method on every task of a grid config, score all k, write the tables.

    python scripts/eval.py --config configs/paper/text_small.yaml
    python scripts/eval.py --config configs/paper/text.yaml ks=[2,8] base.train.lr=4e-4 output_dir=runs/lr4e-4

Writes <output_dir>/results.json, table.md, comparison.md and plot.png (matplotlib); trained heads are kept under
<output_dir>/heads/ and reused by a rerun. Overrides: grid keys (`tasks=[r8]`), or `base.<section>.<key>=value` for
the csrv2 Config every trained method shares.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a grid YAML, e.g. configs/paper/text.yaml")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads (0: torch's default); 1 is far faster on a machine shared with others",
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides (grid keys, or base.section.key=value)")
    args = parser.parse_args(argv)

    import torch

    from csrv2.tables import GridConfig, run_grid

    if args.threads:
        torch.set_num_threads(args.threads)

    grid = GridConfig.from_yaml(args.config, args.overrides)
    start = time.perf_counter()
    run_grid(grid, log=lambda line: print(line, flush=True))
    out = Path(grid.output_dir)
    print((out / "table.md").read_text())
    print((out / "comparison.md").read_text())
    print(f"done in {time.perf_counter() - start:.0f}s; results in {out}/")


if __name__ == "__main__":
    main()
