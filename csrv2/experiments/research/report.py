"""The fold protocol's records → results.json and table.md.

    records: {kind: score, arm, fold (trained on; None for dense), task, type, in_mixture, held_out, seed, k, score}
             {kind: usage, arm, fold, corpus (the other fold), seed, k, dead_pct, n_eff, postings_fraction, rare_pct,
              rows, enough_rows}
    summarise → {arm: {fold | "mean": {"in": {k: score}, "held": {k: score}, "held_sd": {k: sd over seeds},
                 "usage": {k: {...}}, "types": {type: score at the first k}, "train_s", "seeds"}}}, scores × 100

Every mean is over tasks first (each task counts once), then over seeds, then (for "mean") over training folds.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from csrv2.experiments.measure import machine
from csrv2.experiments.table import cell
from csrv2.files import atomic_write_json, atomic_write_text

USAGE_KEYS = ("dead_pct", "n_eff", "postings_fraction", "rare_pct")


def summarise(records: list[dict]) -> dict:
    scores = [r for r in records if r["kind"] == "score" and r.get("score") is not None]
    usage = [r for r in records if r["kind"] == "usage"]
    folds = sorted({r["fold"] for r in scores if r["fold"] is not None})
    ks = sorted({r["k"] for r in scores if r["k"] is not None})
    # The task sets of each training fold, as the general arms saw them (dense is scored on the same sets)
    sets = {
        f: {
            "in": sorted({r["task"] for r in scores if r["fold"] == f and r["in_mixture"]}),
            "held": sorted({r["task"] for r in scores if r["fold"] == f and r["held_out"]}),
        }
        for f in folds
    }
    types = {r["task"]: r["type"] for r in scores}
    out: dict = {}
    for arm in dict.fromkeys(r["arm"] for r in records):
        mine = [r for r in scores if r["arm"] == arm]
        per_fold = {}
        for f in folds:
            if arm == "dense":
                table = {(r["task"], k): [r["score"]] for r in mine for k in ks}
            else:
                table = defaultdict(list)
                for r in mine:
                    if r["fold"] == f:
                        table[(r["task"], r["k"], r["seed"])].append(r["score"])
            per_fold[f] = _fold_summary(arm, f, table, sets[f], types, ks, usage, records)
        out[arm] = {**per_fold, "mean": _mean_over_folds(list(per_fold.values()))}
    return out


def _fold_summary(arm, fold, table, sets, types, ks, usage, records) -> dict:
    seeds = sorted({key[2] for key in table if len(key) == 3}) or [None]

    def mean(tasks, k, seed):
        vals = [
            np.mean(table[(t, k) if seed is None else (t, k, seed)])
            for t in tasks
            if ((t, k) if seed is None else (t, k, seed)) in table
        ]
        return 100 * float(np.mean(vals)) if vals and len(vals) == len(tasks) else None

    summary: dict = {"in": {}, "held": {}, "held_sd": {}, "usage": {}, "types": {}, "seeds": len(seeds)}
    for k in ks:
        for part in ("in", "held"):
            per_seed = [m for m in (mean(sets[part], k, s) for s in seeds) if m is not None]
            summary[part][k] = float(np.mean(per_seed)) if per_seed else None
            if part == "held" and len(per_seed) > 1:
                summary["held_sd"][k] = float(np.std(per_seed))
        rows = [r for r in usage if r["arm"] == arm and r["fold"] == fold and r["k"] == k]
        if rows:
            summary["usage"][k] = {key: float(np.mean([r[key] for r in rows])) for key in USAGE_KEYS}
            summary["usage"][k]["rows"] = rows[0]["rows"]
    if ks:
        for t in sorted({types[t] for t in sets["held"]}):
            tasks = [task for task in sets["held"] if types[task] == t]
            per_seed = [m for m in (mean(tasks, ks[0], s) for s in seeds) if m is not None]
            summary["types"][t] = float(np.mean(per_seed)) if per_seed else None
    train = [r.get("train_s", 0.0) for r in records if r.get("arm") == arm and r.get("fold") == fold]
    summary["train_s"] = float(max(train)) if train else 0.0
    return summary


def _mean_over_folds(parts: list[dict]) -> dict:
    def avg(values):
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values and len(values) == len(parts) else None

    out: dict = {"in": {}, "held": {}, "usage": {}, "types": {}}
    for part in ("in", "held"):
        for k in parts[0][part] if parts else []:
            out[part][k] = avg([p[part].get(k) for p in parts])
    for k in parts[0]["usage"] if parts else []:
        out["usage"][k] = {key: avg([p["usage"].get(k, {}).get(key) for p in parts]) for key in USAGE_KEYS}
    for t in sorted({t for p in parts for t in p["types"]}):
        out["types"][t] = avg([p["types"].get(t) for p in parts])
    out["train_s"] = float(np.mean([p["train_s"] for p in parts])) if parts else 0.0
    return out


def render_table(summary: dict) -> str:
    """One block per training fold and one for the mean over folds: accuracy in/held-out at every k, usage on U."""
    lines = []
    blocks = [b for b in next(iter(summary.values()), {}) if b != "mean"] + ["mean"]
    for block in blocks:
        rows = {arm: s[block] for arm, s in summary.items() if block in s}
        ks = sorted({k for s in rows.values() for k in s["held"]})
        if not ks:
            continue
        k0 = ks[0]
        title = "mean over training folds" if block == "mean" else f"trained on fold {block}"
        lines += [f"### {title}", ""]
        head = ["arm"] + [f"in k={k}" for k in ks] + [f"held-out k={k}" for k in ks]
        head += [f"dead@U k={k0} %", f"n_eff@U k={k0}", f"postings k={k0} %", f"rare@U k={k0} %", "train s"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for arm, s in rows.items():
            u = s["usage"].get(k0, {})
            cells = [arm] + [cell(s["in"].get(k), 1) for k in ks]
            held = [cell(s["held"].get(k), 1) for k in ks]
            if s.get("held_sd", {}).get(k0) is not None:
                held[0] += f" ± {s['held_sd'][k0]:.1f}"
            cells += held
            postings = None if u.get("postings_fraction") is None else 100 * u["postings_fraction"]
            cells += [
                cell(u.get("dead_pct"), 1),
                cell(u.get("n_eff"), 0),
                cell(postings, 2),
                cell(u.get("rare_pct"), 1),
            ]
            cells.append(cell(s.get("train_s"), 0))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        types = sorted({t for s in rows.values() for t in s["types"]})
        if types:
            lines += [f"held-out by task type, k={k0}:", ""]
            lines += ["| arm | " + " | ".join(types) + " |", "|" + "---|" * (len(types) + 1)]
            for arm, s in rows.items():
                lines.append(f"| {arm} | " + " | ".join(cell(s["types"].get(t), 1) for t in types) + " |")
            lines.append("")
    return "\n".join(lines)


def write_outputs(output_dir: str | Path, config: dict, records: list[dict], elapsed_s: float) -> dict:
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(records)
    atomic_write_json(
        out / "results.json",
        {"config": config, "machine": machine(), "elapsed_s": elapsed_s, "summary": summary, "records": records},
    )
    atomic_write_text(out / "table.md", render_table(summary))
    return summary
