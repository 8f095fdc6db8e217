"""Fill the embedding cache: python scripts/embed.py --config configs/<run>.yaml [section.key=value ...]

Embeds data.task's training examples and every split of data.task and eval.tasks with `backbone`, into
$CSRV2_HOME/embeddings (reused by training and evaluation; already cached parts are skipped).
"""

import argparse
import sys

from csrv2.cache import fill
from csrv2.config import Config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="YAML run config (only differences from the defaults)")
    parser.add_argument(
        "overrides", nargs="*", help="dotted overrides, e.g. data.task=r8 backbone.name=all-mpnet-base-v2"
    )
    args = parser.parse_args(argv)
    config = Config.from_yaml(args.config, args.overrides)
    if not config.data.task and not config.eval.tasks:
        sys.exit("nothing to embed: set data.task or eval.tasks")
    for part in fill(config):
        print(f"cached {part}", file=sys.stderr)


if __name__ == "__main__":
    main()
