"""Embedding speed on the CPU: every backbone.runtime side by side on the same real texts, threads and batch sizes.

    python scripts/bench_embed.py --texts 700 --threads 1 2 --batch-sizes 32 128 --rounds 3 --json

Texts of three lengths (LENGTHS: question titles, tweets, news paragraphs; n of each catalog task's train split, seed
0) embedded by TextEncoder in every runtime installed (PATHS; batches by token count, backbone.batch_order=tokens),
plus torch under bf16 autocast as a peer that csrv2 does not offer. Per (length, batch size, threads) cell the paths
run in `rounds` rounds, each round in a rotated order, so that a busy machine slows each alike; a path's texts/s is n
over its median round, its ratio to torch the median over rounds of torch's seconds / its seconds in the same round.
Tokenizing alone (the same batches, no forward) is timed in the rounds too. Each path's output is compared with
torch fp32's: max |Δ| per coordinate and the lowest cosine per text (the conversions are done before timing). The
machine's load averages are recorded before and after each cell.

`breakdown` says where torch's time goes on each length (tokenizing, embeddings, attention, FFN, pooling; padding
share of the batch tokens), by forward hooks on the transformers modules of one round.

    result = run_embed_speed(texts=300, threads=(1,), batch_sizes=(32,)); print(format(result))
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import importlib.util
import json
import os
import re
import statistics
import time
from collections import defaultdict

import numpy as np
import torch

from csrv2.backbone import runtimes
from csrv2.backbone.encoders import TextEncoder, load_backbone, torch_threads
from csrv2.config.run_config import BackboneConfig
from csrv2.data.catalog import get_task

LENGTHS = {"titles": "stc2-stackoverflow", "tweets": "election-tweets", "news": "r8"}
# the csrv2 runtimes in the table (exact ones first), then torch-bf16: torch autocast to bfloat16, a peer only
PATHS = ["torch", "onnx", "onnx-fused", "openvino", "ct2", "onnx-int8", "ct2-int8", "openvino-bf16", "torch-bf16"]
PEER_NOTES = {
    "sentence-transformers backend=onnx": ("optimum.onnxruntime", "optimum-onnx, which pins transformers 4.57"),
    "sentence-transformers backend=openvino": ("optimum.intel", "optimum-intel, which pulls torch 2.14"),
}


def sample_texts(task: str, n: int, seed: int = 0) -> list[str]:
    """n texts of the task's train split drawn without replacement (all of them when it has fewer)."""
    texts = get_task(task).training_texts()[0]
    rows = np.random.default_rng(seed).permutation(len(texts))[:n]
    return [texts[i] for i in rows]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of a (N, d) with the same row of b (N, d)."""
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(norms, 1e-12)


def load_averages() -> str:
    """The 1, 5 and 15 minute load averages, as `uptime` prints them."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def padding_share(encoder: TextEncoder, texts: list[str], batch_size: int) -> float:
    """Padding tokens / all batch tokens when `encoder` batches `texts` in its order (B × longest row per batch)."""
    ids = encoder.tokenizer(texts, truncation=True, max_length=encoder.max_length)["input_ids"]
    lengths = np.array([len(row) for row in ids])[encoder.length_order(texts)]
    batches = [lengths[i : i + batch_size] for i in range(0, len(lengths), batch_size)]
    total = sum(len(b) * int(b.max()) for b in batches)
    return 1 - int(lengths.sum()) / total


def torch_bf16(encoder: TextEncoder) -> TextEncoder:
    """A shallow copy of a torch encoder whose forward runs under bfloat16 autocast (AMX / AVX-512 BF16 matrix
    products where the CPU has them), output cast back to float32."""
    bf16 = copy.copy(encoder)

    def forward(batch):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return encoder.model(**batch).last_hidden_state.float()

    bf16.runtime = forward
    return bf16


def installed(path: str) -> bool:
    return path in ("torch", "torch-bf16") or importlib.util.find_spec(runtimes.RUNTIMES[path].module) is not None


def encoders(cfg: BackboneConfig, paths: list[str]) -> dict[str, TextEncoder]:
    """Each path's encoder (the torch model shared by torch-bf16); conversions happen here, before any timing."""
    out = {"torch": load_backbone(cfg)}
    for path in paths:
        if path == "torch-bf16":
            out[path] = torch_bf16(out["torch"])
        elif path != "torch":
            out[path] = load_backbone(dataclasses.replace(cfg, runtime=path))
    return out


def tokenize_only(encoder: TextEncoder, texts: list[str], batch_size: int) -> None:
    """The tokenizer calls of encode() on the same batches, nothing else."""
    order = encoder.length_order(texts)
    for start in range(0, len(texts), batch_size):
        idx = order[start : start + batch_size]
        encoder.tokenizer(
            [texts[i] for i in idx], padding=True, truncation=True, max_length=encoder.max_length, return_tensors="pt"
        )


def time_cell(
    paths: dict[str, TextEncoder], texts: list[str], batch_size: int, threads: int, rounds: int
) -> tuple[dict, dict]:
    """`rounds` rounds of every path (and tokenizing alone) on `texts`, each round in a rotated order: seconds per
    path per round, and each path's output."""
    names = [*paths, "tokenize"]
    seconds: dict[str, list[float]] = {name: [] for name in names}
    outputs: dict[str, np.ndarray] = {}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            if name == "tokenize":
                with torch_threads(threads):
                    tokenize_only(paths["torch"], texts, batch_size)
            else:
                outputs[name] = paths[name].encode(texts, batch_size=batch_size, progress=False)
            seconds[name].append(time.perf_counter() - start)
    return seconds, outputs


def summarise(seconds: dict, outputs: dict, n: int) -> dict:
    """Per path: round seconds, texts/s (n / median round), ratio to torch (median of paired round ratios), max |Δ|
    and lowest cosine to torch's output."""
    ref = outputs["torch"]
    out = {}
    for name, rounds in seconds.items():
        row = {
            "seconds": [round(s, 3) for s in rounds],
            "texts_per_s": round(n / statistics.median(rounds), 1),
            "over_torch": round(statistics.median(t / s for t, s in zip(seconds["torch"], rounds)), 3),
        }
        if name in outputs:
            row["max_abs_diff_vs_torch"] = float(np.abs(outputs[name] - ref).max())
            row["min_cosine_vs_torch"] = round(float(cosines(outputs[name], ref).min()), 6)
        out[name] = row
    return out


LAYER = re.compile(r".*layers?\.\d+\.(attention|intermediate|output)$")


def breakdown(encoder: TextEncoder, texts: list[str], batch_size: int) -> dict:
    """Where torch's time goes on `texts` (one encode, hooks on the transformers modules): seconds in tokenizing,
    the embeddings, attention (Q/K/V, scores, softmax, output projection, residual LayerNorm), the FFN (both dense
    layers, GELU, residual LayerNorm), and the rest (pooling, normalising, copies); padding share of the tokens."""
    spent: dict[str, float] = defaultdict(float)
    started: dict[str, float] = {}
    hooks = []

    def part_of(name: str) -> str | None:
        if name.endswith("embeddings"):
            return "embeddings"
        match = LAYER.match(name)
        if match is None:
            return None
        return "attention" if match.group(1) == "attention" else "ffn"

    for name, module in encoder.model.named_modules():
        part = part_of(name)
        if part is None:
            continue
        hooks.append(
            module.register_forward_pre_hook(lambda m, a, key=name: started.__setitem__(key, time.perf_counter()))
        )
        hooks.append(
            module.register_forward_hook(
                lambda m, a, o, key=name, part=part: spent.__setitem__(
                    part, spent[part] + time.perf_counter() - started[key]
                )
            )
        )
    try:
        start = time.perf_counter()
        encoder.encode(texts, batch_size=batch_size, progress=False)
        total = time.perf_counter() - start
    finally:
        for hook in hooks:
            hook.remove()
    start = time.perf_counter()
    with torch_threads(encoder.cfg.threads):
        tokenize_only(encoder, texts, batch_size)
    spent["tokenize"] = time.perf_counter() - start
    spent["rest"] = max(total - sum(spent[k] for k in ("embeddings", "attention", "ffn", "tokenize")), 0.0)
    return {
        "total_s": round(total, 3),
        "shares": {k: round(v / total, 4) for k, v in spent.items()},
        "padding_share": round(padding_share(encoder, texts, batch_size), 4),
    }


def run_embed_speed(
    texts: int = 700,
    threads: tuple[int, ...] = (1, 2),
    batch_sizes: tuple[int, ...] = (32, 128),
    rounds: int = 3,
    lengths: dict[str, str] | None = None,
    paths: list[str] | None = None,
    max_length: int = 256,
    backbone: str = "all-MiniLM-L6-v2",
    log=print,
) -> dict:
    """Every installed path on `texts` texts of each length, per thread count and batch size, rounds rotated;
    the torch breakdown per length (batch = the first batch size, 1 thread). Returns settings, cells, breakdown,
    the paths not installed and the peers not run."""
    lengths = lengths or LENGTHS
    wanted = paths or PATHS
    samples = {name: sample_texts(task, texts) for name, task in lengths.items()}
    present = [p for p in wanted if installed(p)]
    cells, breakdowns = [], {}
    for n_threads in threads:
        cfg = BackboneConfig(
            name=backbone, device="cpu", threads=n_threads, max_length=max_length, batch_order="tokens"
        )
        start = time.perf_counter()
        encs = encoders(cfg, present)
        load_seconds = round(time.perf_counter() - start, 1)
        for batch_size in batch_sizes:
            for length, sample in samples.items():
                before = load_averages()
                seconds, outputs = time_cell(encs, sample, batch_size, n_threads, rounds)
                cell = {
                    "length": length,
                    "task": lengths[length],
                    "texts": len(sample),
                    "threads": n_threads,
                    "batch_size": batch_size,
                    "load_before": before,
                    "load_after": load_averages(),
                    "padding_share": round(padding_share(encs["torch"], sample, batch_size), 4),
                    "paths": summarise(seconds, outputs, len(sample)),
                    "load_seconds": load_seconds,
                }
                cells.append(cell)
                log(format_cell(cell))
        if n_threads == min(threads):
            for length, sample in samples.items():
                breakdowns[length] = breakdown(encs["torch"], sample, batch_sizes[0])
        del encs
    notes = {peer: why for peer, (module, why) in PEER_NOTES.items() if not _importable(module)}
    settings = {"texts_per_length": texts, "rounds": rounds, "max_length": max_length, "backbone": backbone}
    settings.update(torch=torch.__version__, versions=_versions(), cpu=_cpu())
    return {
        "settings": settings,
        "cells": cells,
        "breakdown": breakdowns,
        "breakdown_batch_size": batch_sizes[0],
        "breakdown_threads": min(threads),
        "not_installed": [p for p in wanted if p not in present],
        "peers_not_run": notes,
    }


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _versions() -> dict[str, str]:
    import importlib.metadata

    out = {}
    for package in ("onnxruntime", "openvino", "ctranslate2", "transformers", "tokenizers"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[package] = importlib.metadata.version(package)
    return out


def _cpu() -> str:
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    return f"{os.cpu_count()} cores"


def format_cell(cell: dict) -> str:
    """One (length, batch, threads) cell as a markdown table."""
    lines = [
        f"{cell['length']} ({cell['task']}, {cell['texts']} texts, padding {100 * cell['padding_share']:.1f} %), "
        f"batch {cell['batch_size']}, {cell['threads']} thread(s); load average {cell['load_before']} → "
        f"{cell['load_after']}",
        "",
        "| path | texts/s | × torch | seconds per round | max abs diff vs torch | min cosine vs torch |",
        "|---|---|---|---|---|---|",
    ]
    for name, p in cell["paths"].items():
        rounds = " / ".join(f"{x:.2f}" for x in p["seconds"])
        diff = f"{p['max_abs_diff_vs_torch']:.1e}" if "max_abs_diff_vs_torch" in p else "—"
        cos = f"{p['min_cosine_vs_torch']:.5f}" if "min_cosine_vs_torch" in p else "—"
        label = "tokenize only" if name == "tokenize" else name
        lines.append(f"| {label} | {p['texts_per_s']:.1f} | {p['over_torch']:.2f} | {rounds} | {diff} | {cos} |")
    return "\n".join(lines)


def format(result: dict) -> str:
    """The summary: × torch per path and cell (median of paired rounds), the largest |Δ| per path, the torch
    breakdown, and what did not run."""
    s, cells = result["settings"], result["cells"]
    paths = [p for p in cells[0]["paths"] if p != "tokenize"] if cells else []
    heads = [f"{c['length']} b{c['batch_size']} t{c['threads']}" for c in cells]
    lines = [
        f"{s['texts_per_length']} texts per length (train splits, seed 0), {s['backbone']}, max_length "
        f"{s['max_length']}, batches by token count, median of {s['rounds']} rotated rounds; {s.get('cpu', '')}, "
        f"torch {s['torch']}, " + ", ".join(f"{k} {v}" for k, v in s.get("versions", {}).items()),
        "",
        "Texts/s relative to torch fp32 (same rounds), then torch's own texts/s, and per path the largest max |Δ| per "
        "coordinate and the lowest cosine to torch over all cells:",
        "",
        "| path | " + " | ".join(heads) + " | max abs diff | min cosine |",
        "|---|" + "---|" * (len(heads) + 2),
    ]
    for p in paths:
        ratios = [f"{c['paths'][p]['over_torch']:.2f}" for c in cells]
        diff = max(c["paths"][p]["max_abs_diff_vs_torch"] for c in cells)
        cos = min(c["paths"][p]["min_cosine_vs_torch"] for c in cells)
        lines.append(f"| {p} | " + " | ".join(ratios) + f" | {diff:.1e} | {cos:.5f} |")
    lines.append(
        "| torch texts/s | " + " | ".join(f"{c['paths']['torch']['texts_per_s']:.0f}" for c in cells) + " | | |"
    )
    lines.append(
        "| tokenizing, share of torch's time | "
        + " | ".join(f"{100 / c['paths']['tokenize']['over_torch']:.1f} %" for c in cells)
        + " | | |"
    )
    lines.append("| load average (1 min) before | " + " | ".join(c["load_before"].split()[0] for c in cells) + " | | |")
    if result.get("breakdown"):
        lines += [
            "",
            f"Where torch's time goes (batch {result['breakdown_batch_size']}, {result['breakdown_threads']} "
            "thread(s), one encode with module hooks):",
            "",
            "| length | seconds | tokenize | embeddings | attention | FFN | rest (pooling, copies) | padding share |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for length, b in result["breakdown"].items():
            sh = b["shares"]
            lines.append(
                f"| {length} | {b['total_s']:.2f} | "
                + " | ".join(
                    f"{100 * sh.get(k, 0):.1f} %" for k in ("tokenize", "embeddings", "attention", "ffn", "rest")
                )
                + f" | {100 * b['padding_share']:.1f} % |"
            )
    if result.get("not_installed"):
        lines += ["", "Not installed here: " + ", ".join(result["not_installed"]) + "."]
    for peer, why in result.get("peers_not_run", {}).items():
        lines += ["", f"Not run: {peer} (needs {why})."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=700, help="texts of each length")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="intra-op threads, one cell each")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--paths", nargs="+", default=None, help=f"subset of {' '.join(PATHS)}")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--backbone", default="all-MiniLM-L6-v2")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line after the table")
    parser.add_argument("--out", default="", help="also write the result as JSON here")
    args = parser.parse_args(argv)
    result = run_embed_speed(
        args.texts,
        tuple(args.threads),
        tuple(args.batch_sizes),
        args.rounds,
        paths=args.paths,
        max_length=args.max_length,
        backbone=args.backbone,
        log=lambda text: print(text + "\n", flush=True),
    )
    print(format(result), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    if args.json:
        print(json.dumps(result), flush=True)
