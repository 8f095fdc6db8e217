"""Train a sparse head: python scripts/train.py --config configs/<run>.yaml [section.key=value ...]"""

import argparse
import os
import sys

from csrv2.config import Config
from csrv2.head import SparseHead
from csrv2.run_eval import evaluate_run, format_results
from csrv2.trainer import Trainer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", help="YAML run config (only differences from the defaults)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=3e-4 head.k=4")
    parser.add_argument("--describe", action="store_true", help="print every option with its default and exit")
    parser.add_argument(
        "--eval-only", action="store_true", help="score the head already trained in output_dir (eval.* of this config)"
    )
    args = parser.parse_args(argv)
    if args.describe:
        print(Config.describe())
        return
    config = Config.from_yaml(args.config, args.overrides)
    if args.eval_only:
        print(format_results(evaluate_run(config, SparseHead.from_pretrained(config.output_dir))))
        return
    head = Trainer(config).fit()
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 speaks
        return
    print(f"trained head saved in {config.output_dir}", file=sys.stderr)
    has_eval = config.eval.tasks or config.data.task or config.data.eval_embeddings
    if config.eval.after_training and has_eval and config.train.objective != "mrl":
        print(format_results(evaluate_run(config, head)))


if __name__ == "__main__":
    main()
