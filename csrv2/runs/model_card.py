"""The run folder's README.md: what a trained head is, what it trained on, how it scores and what produced it.

    write_model_card(run_dir)     render and write <run_dir>/README.md atomically (the trainer calls it when the
                                  final head is saved, run_eval again after writing eval.json)
    render_model_card(run_dir, name, model_folder)   the markdown, from config.yaml, data.json, metrics.jsonl,
                                  eval.json, run.json and csrv2_backbone.json
    format_results(results)       the evaluation table (the one `csrv2 train` prints)

One card for the run folder and for the model folder written from it (csrv2.model_folder: SparseModel.save,
csrv2.export, push_to_hub), which sentence-transformers and csrv2 both open: the hub's metadata, usage for csrv2,
sentence-transformers and Qdrant, the similarity the scores use (csrv2.runs.hub_card), then what the run was.
"""

from __future__ import annotations

import json
from pathlib import Path

from csrv2.config.run_config import Config
from csrv2.files import atomic_write_text
from csrv2.head.k_annealing import KAnnealing
from csrv2.runs.hub_card import hub_metadata, usage_lines
from csrv2.runs.layout import BACKBONE_RECORD, CARD_FILE, CONFIG_FILE, DATA_RECORD, EVAL_FILE, METRICS_FILE
from csrv2.runs.metrics import read_metrics
from csrv2.runs.provenance import FROM_PYTHON, read_run_record

DATA_KEYS = ("task", "tasks", "mixture", "unlabeled", "max_per_task", "embeddings", "eval_embeddings")


def format_results(results: dict) -> str:
    """A markdown table: one row per task, the dense score, then score (dead %) at each k."""
    ks = sorted({int(k) for r in results.values() for k in r["sparse"]})
    lines = [
        "| task | type | dense | " + " | ".join(f"k={k} (dead %)" for k in ks) + " |",
        "|---|---|---|" + "---|" * len(ks),
    ]
    for name, r in results.items():
        cells = [
            f"{100 * r['sparse'][k]['score']:.1f} ({r['sparse'][k]['dead_pct']:.0f})" if k in r["sparse"] else "-"
            for k in ks
        ]
        lines.append(f"| {name} | {r['type']} | {100 * r['dense']:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def read_eval(run_dir: str | Path) -> dict | None:
    """<run_dir>/eval.json with its k keys back to ints (JSON made them strings); None when the run has none."""
    path = Path(run_dir) / EVAL_FILE
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
        for r in results.values():
            r["sparse"] = {int(k): v for k, v in r["sparse"].items()}
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: not an eval.json written by csrv2 ({type(err).__name__}: {err})") from None
    return results


def read_json_file(path: Path) -> dict | None:
    """A JSON record of the run folder (data.json), or None when absent; a damaged file is named."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def _rows(pairs: list[tuple[str, object]]) -> list[str]:
    return ["| | |", "|---|---|", *(f"| {key} | {value} |" for key, value in pairs)]


def render_model_card(run_dir: str | Path, name: str | None = None, model_folder: bool = False) -> str:
    """The markdown of the card (see the module docstring for the sources). Needs the run's config.yaml.
    name: what the usage snippets load (a hub id, a folder; default "path/to/this/folder"). model_folder: the card of
    a folder sentence-transformers opens too (its snippet, library_name sentence-transformers)."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{run_dir / 'config.yaml'} not found: a model card describes a csrv2 run folder")
    config = Config.from_yaml(run_dir / CONFIG_FILE)
    b, h, t, d = config.backbone, config.head, config.train, config.data
    data_record = read_json_file(run_dir / DATA_RECORD) or {}
    metrics = read_metrics(run_dir / METRICS_FILE) if (run_dir / METRICS_FILE).is_file() else []
    results = read_eval(run_dir)
    sessions = read_run_record(run_dir)["sessions"]

    record = read_json_file(run_dir / BACKBONE_RECORD) or {}
    backbone_name = None if d.embeddings else record.get("name", b.name)
    trained_on = {d.task, *d.mixture, *d.unlabeled}
    hf_sets = [s.path[3:].split(":")[0] for s in d.tasks if s.name in trained_on and str(s.path).startswith("hf:")]
    sparse = t.objective != "mrl"
    title = name or run_dir.name
    lines = [hub_metadata(title, backbone_name, results if sparse else None, hf_sets, model_folder and sparse)]
    on = f" on `{backbone_name}`" if backbone_name else ""
    lines += [f"# {title}: a csrv2 sparse head{on}", ""]
    what = f"A TopK sparse head (h = {h.hidden} latents, k = {h.k} active)" if sparse else "A Matryoshka (MRL) head"
    lines += [f"{what}{on}, trained with csrv2 (objective `{t.objective}`).", ""]
    if sparse:
        lines += usage_lines(name or "path/to/this/folder", h.k, model_folder)

    lines += ["## Backbone", ""]
    if d.embeddings:
        lines += [f"Trained on given embeddings (`data.embeddings: {d.embeddings}`): the backbone is not recorded.", ""]
    else:
        backbone = [("name", f"`{b.name}`"), ("kind", b.kind), ("pooling", b.pooling)]
        backbone += [("normalize", b.normalize), ("max_length", b.max_length), ("training", t.backbone)]
        backbone += [("query prompt", repr(b.query_prompt)), ("document prompt", repr(b.document_prompt))]
        lines += [*_rows(backbone), ""]

    lines += ["## Head and training", ""]
    head = [("objective", t.objective), ("h (head.hidden)", h.hidden), ("k (head.k)", h.k), ("k_aux", h.k_aux)]
    annealed = config.anneal and sparse  # the trainer's rule; the start k as its schedule clips it
    start = KAnnealing(t.k_start, h.k, hidden=h.hidden).start if annealed else "off"
    head += [("k annealed from", start), ("lr", t.lr), ("batch_size", t.batch_size)]
    if metrics:
        last = metrics[-1]
        head += [("steps", last.get("step")), ("final loss", f"{last.get('loss', float('nan')):.4g}")]
        head += [("training seconds (last session)", last.get("elapsed_s"))]
    lines += [*_rows(head), "", "Every loss part, k, lr and the dead-latent % per logged step: `metrics.jsonl`", ""]

    lines += ["## Training data", ""]
    given = [(f"data.{key}", getattr(d, key)) for key in DATA_KEYS if getattr(d, key) not in ("", [], None)]
    if not (d.mixture or d.unlabeled):  # max_per_task only draws from those
        given = [(key, value) for key, value in given if key != "data.max_per_task"]
    given = [(key, [s.name for s in value] if key == "data.tasks" else value) for key, value in given]
    given += [("source (data.json)", f"`{data_record.get('source', 'unknown')}`")]
    given += [("rows (data.json)", data_record.get("rows", "unknown"))]
    lines += [*_rows(given), ""]

    lines += ["## Evaluation", ""]
    if results is None:
        lines += ["Not evaluated yet (no eval.json): `csrv2 train --config <this config.yaml> --eval-only`.", ""]
    else:
        lines += [
            "Scores × 100 from `eval.json`, by csrv2's scoring (cosine throughout; classification: logistic-regression "
            "accuracy, sts: Spearman, retrieval: nDCG@10, ...). dense: the backbone's embeddings without the head; "
            "k = n: the codes with n active latents (a top-n of the same head); dead %: latents never active on the "
            "test split.",
            "",
            format_results(results),
            "",
        ]

    lines += ["## How it was made", ""]
    if not sessions:
        lines += ["No run.json: the folder was trained before csrv2 recorded its sessions.", ""]
    for i, session in enumerate(sessions):
        label = "Trained" if i == 0 else "Resumed"
        git = session.get("git", {})
        dirty = " (with uncommitted changes)" if git.get("dirty") else ""
        command = session.get("command", FROM_PYTHON)
        shown = command if command == FROM_PYTHON else f"`{command}`"
        lines += [f"- {label} {session.get('started', '')}: {shown}; csrv2 commit {git.get('commit')}{dirty}"]
    if sessions:
        versions = [(name, v) for name, v in sessions[-1].get("packages", {}).items() if v is not None]
        versions = [("python", sessions[-1].get("python")), *versions]
        lines += ["", "Package versions (last session):", "", *_rows(versions)]
    return "\n".join(lines).rstrip() + "\n"


def write_model_card(run_dir: str | Path) -> Path:
    """Render the card and write <run_dir>/README.md atomically; returns its path."""
    return atomic_write_text(Path(run_dir) / CARD_FILE, render_model_card(run_dir))
