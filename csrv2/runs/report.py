"""Finished runs, looked at: training curves as a PNG, and several runs side by side.

csrv2 plot RUN [--out curves.png]     plot_run: one panel per metrics.jsonl key (every loss part, k, lr, dead %)
csrv2 compare RUN1 RUN2 ...           compare_runs: eval.json tables side by side, then the config.yaml keys
                                      (and run.json / data.json records) in which the runs differ
"""

from __future__ import annotations

import math
from pathlib import Path

from csrv2 import extras
from csrv2.config.run_config import Config
from csrv2.config.strict import ConfigError, flatten
from csrv2.files import atomic_write
from csrv2.runs.layout import CONFIG_FILE, CURVES_FILE, DATA_RECORD, METRICS_FILE, RUN_RECORD
from csrv2.runs.metrics import read_metrics
from csrv2.runs.model_card import read_eval, read_json_file
from csrv2.runs.provenance import read_run_record

NOT_CURVES = ("step", "epoch", "elapsed_s")  # x axis and bookkeeping, not curves
PANEL_ORDER = ("loss",)  # the total first; then the loss parts, then k, lr, dead_pct and anything else


def curves(run_dir: str | Path) -> dict[str, tuple[list[int], list[float]]]:
    """{metric: (steps, values)} from <run_dir>/metrics.jsonl: every numeric key but step, epoch and elapsed_s."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: csrv2 plot reads the metrics.jsonl of a run folder")
    out: dict[str, tuple[list[int], list[float]]] = {}
    for line in read_metrics(path):
        for key, value in line.items():
            if key not in NOT_CURVES and isinstance(value, int | float) and not isinstance(value, bool):
                steps, values = out.setdefault(key, ([], []))
                steps.append(line["step"])
                values.append(float(value))
    if not out:
        raise ValueError(f"{path} holds no logged step yet: nothing to plot")

    def rank(key: str) -> tuple[int, str]:
        return (0 if key in PANEL_ORDER else 1 if key.endswith("_loss") else 2, key)

    return {key: out[key] for key in sorted(out, key=rank)}


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> tuple[Path, dict]:
    """Draw curves(run_dir) to a PNG (default <run_dir>/curves.png, written atomically); returns (path, curves)."""
    Figure = extras.require("matplotlib.figure", "csrv2 plot").Figure
    run_dir = Path(run_dir)
    data = curves(run_dir)
    cols = 3
    rows = math.ceil(len(data) / cols)
    fig = Figure(figsize=(4.2 * cols, 2.8 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (key, (steps, values)) in zip(axes, data.items()):
        ax.plot(steps, values, marker="." if len(steps) < 30 else None)
        ax.set_title(key)
        ax.set_xlabel("step")
        if key.endswith("loss") and min(values) > 0 and max(values) / min(values) > 100:
            ax.set_yscale("log")  # a loss that falls by orders of magnitude
    for ax in axes[len(data) :]:
        ax.set_visible(False)
    fig.suptitle(str(run_dir.name))
    path = Path(out) if out is not None else run_dir / CURVES_FILE
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    return path, data


def _run_columns(run_dirs: list[Path]) -> list[str]:
    """Column names: the folder names, or the paths as given when two folders share a name."""
    names = [p.name for p in run_dirs]
    return names if len(set(names)) == len(names) else [str(p) for p in run_dirs]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def _shown(value) -> str:
    return '""' if value == "" else str(value)  # an empty string stays visible in a table cell


def _differing(records: list[dict]) -> list[tuple[str, list]]:
    """(dotted key, values per run) for every key whose value is not the same in all the flattened records."""
    flat = [flatten(r) for r in records]
    keys = sorted(set().union(*flat))
    missing = object()
    out = []
    for key in keys:
        values = [f.get(key, missing) for f in flat]
        if any(v != values[0] for v in values[1:]):
            out.append((key, ["(absent)" if v is missing else v for v in values]))
    return out


def compare_runs(run_dirs: list[str | Path]) -> str:
    """Markdown: the runs' evaluation side by side, then every config / record key in which they differ."""
    if len(run_dirs) < 2:
        raise ConfigError(f"csrv2 compare needs at least two run folders, got {len(run_dirs)}")
    dirs = [Path(p) for p in run_dirs]
    for d in dirs:
        if not (d / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{d / 'config.yaml'} not found: csrv2 compare takes run folders of csrv2 train")
    names = _run_columns(dirs)
    results = [read_eval(d) for d in dirs]

    lines = ["## Evaluation (score ×100, dead % in brackets)", ""]
    tasks = list(dict.fromkeys(t for r in results if r for t in r))
    rows = []
    for task in tasks:
        ks = sorted({k for r in results if r and task in r for k in r[task]["sparse"]})
        cells = [f"{100 * r[task]['dense']:.1f}" if r and task in r else "-" for r in results]
        rows.append([task, "dense", *cells])
        for k in ks:
            cells = []
            for r in results:
                s = r[task]["sparse"].get(k) if r and task in r else None
                cells.append(f"{100 * s['score']:.1f} ({s['dead_pct']:.0f})" if s else "-")
            rows.append([task, f"k={k}", *cells])
    lines += _table(["task", "score", *names], rows) if rows else ["No run holds an eval.json."]
    lines += [f"\n{n}: no eval.json (not evaluated)" for n, r in zip(names, results) if r is None]

    configs = [Config.from_yaml(d / CONFIG_FILE).to_dict() for d in dirs]
    for c in configs:
        c.pop("output_dir")  # differs for every pair of runs; the columns already name them
    lines += ["", "## Config keys that differ (config.yaml)", ""]
    diff = _differing(configs)
    lines += _table(["key", *names], [[k, *map(_shown, v)] for k, v in diff]) if diff else ["None: the same config."]

    # Where each run came from: the code and packages of its last session, and what it trained on.
    records = []
    for d in dirs:
        sessions = read_run_record(d)["sessions"]
        last = sessions[-1] if sessions else {}
        records.append(
            {
                RUN_RECORD: {"git": last.get("git"), "packages": last.get("packages")},
                DATA_RECORD: read_json_file(d / DATA_RECORD),
            }
        )
    lines += ["", "## Recorded differences (run.json: last session; data.json)", ""]
    diff = _differing(records)
    lines += _table(["key", *names], [[k, *map(_shown, v)] for k, v in diff]) if diff else ["None."]
    return "\n".join(lines) + "\n"
