"""The cost-curve table and plot of csrv2.experiments.cost_curves: one row per N, one column per measured cost, and a
last row with each column's growth exponent (slope of log cost over log N)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np


def columns(ks: list[int]) -> list[tuple[str, Callable[[dict], float | None]]]:
    """(header, value of one size's record) for every column; None where a stage was not run at that N."""

    def get(*keys):
        def value(record):
            for key in keys:
                if not isinstance(record, dict) or key not in record:
                    return None
                record = record[key]
            return record

        return value

    cols = [
        ("embed s (extrapolated)", get("embed_s_extrapolated")),
        ("train s/epoch", get("train", "epoch_s")),
        ("train peak anon MiB", get("train", "peak_anon_mib")),
        ("train VmHWM MiB", get("train", "peak_rss_mib")),
        ("load+check s", get("train", "load_s")),
        ("encode→index s (k=2)", get("encode", "encode_s")),
        ("encode peak MiB", get("encode", "peak_rss_mib")),
    ]
    for k in ks:
        cols += [
            (f"build s k={k}", get(f"k{k}", "build_s")),
            (f"index MiB k={k}", get(f"k{k}", "index_mib")),
            (f"query µs k={k}", get(f"k{k}", "median_us")),
            (f"batch q/s k={k}", get(f"k{k}", "batch_qps")),
            (f"Qdrant local query µs k={k}", get(f"k{k}", "qdrant_median_us")),
        ]
    return cols


def growth_exponents(results: dict) -> dict[str, float | None]:
    sizes = [int(n) for n in results["sizes"]]
    out = {}
    for header, value in columns(results["args"]["ks"]):
        pairs = [(n, value(r)) for n, r in zip(sizes, results["sizes"].values())]
        pairs = [(n, v) for n, v in pairs if v is not None and v > 0]
        out[header] = (
            float(np.polyfit(np.log([p[0] for p in pairs]), np.log([p[1] for p in pairs]), 1)[0])
            if len(pairs) >= 2
            else None
        )
    return out


def _fmt(v) -> str:
    if v is None:
        return "—"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def table(results: dict) -> str:
    cols = columns(results["args"]["ks"])
    lines = ["| N | " + " | ".join(h for h, _ in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for n, record in results["sizes"].items():
        lines.append(f"| {int(n):,} | " + " | ".join(_fmt(value(record)) for _, value in cols) + " |")
    exps = growth_exponents(results)
    lines.append(
        "| growth exponent | " + " | ".join("—" if exps[h] is None else f"{exps[h]:.2f}" for h, _ in cols) + " |"
    )
    exact = all(r[f"k{k}"]["exact"] for r in results["sizes"].values() for k in results["args"]["ks"])
    qdrant = [r[f"k{k}"].get("qdrant_same") for r in results["sizes"].values() for k in results["args"]["ks"]]
    lines.append("")
    lines.append(
        f"SparseIndex top scores equal brute force at every N and k: {exact}; Qdrant local's equal "
        f"SparseIndex's wherever it ran: {all(q for q in qdrant if q is not None)}."
    )
    return "\n".join(lines)


def plot(results: dict, out: str | Path) -> None:
    """Log-log panels: time (s), memory (MiB), query latency (µs) against N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = np.array([int(n) for n in results["sizes"]])
    cols = dict(columns(results["args"]["ks"]))
    panels = {
        "seconds": [h for h in cols if h.endswith(" s") or " s " in h or "s/epoch" in h or h.startswith("build s")],
        "MiB": [h for h in cols if "MiB" in h],
        "µs per query": [h for h in cols if "query µs" in h],
    }
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    for ax, (unit, headers) in zip(axes, panels.items()):
        for h in headers:
            values = [cols[h](r) for r in results["sizes"].values()]
            keep = [i for i, v in enumerate(values) if v is not None and v > 0]
            if keep:
                ax.loglog(sizes[keep], [values[i] for i in keep], marker="o", label=h)
        ax.set_xlabel("N rows")
        ax.set_ylabel(unit)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
