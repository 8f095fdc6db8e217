"""Embedding speed on the CPU: backbone.runtime torch against onnx and onnx-int8, on the same real texts and threads.

    python scripts/bench_embed.py --task r8 --texts 2000 --threads 1 --rounds 2

N texts of a catalog task's train split (seed 0; Reuters R8 by default: 68 to 2,000+ characters, a third cut at
max_length) embedded by TextEncoder four ways, in alternating rounds so that a busy machine slows each alike:
  torch         the transformers model, batches of texts sorted by token count (backbone.batch_order=tokens)
  torch-chars   the same, batches sorted by characters (csrv2's default order)
  onnx          the exported model in onnxruntime (csrv2.backbone.onnx_runtime), token order
  onnx-int8     that export with int8 MatMul weights (dynamic quantisation, csrv2.backbone.onnx_runtime.INT8_SETTINGS)
Each path's texts/s is N / its fastest round (tokenizing and pooling included; the export and the quantisation are
done before timing). Also: the share of batch tokens that are padding under each order, and max |Δ| per coordinate
and the lowest cosine per text against torch (int8 is not exact: its accuracy cost is scripts/bench_int8.py).

    result = run_embed_speed(texts=2000, threads=1); print(format(result))
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import time

import numpy as np
import torch

from csrv2.backbone.encoders import TextEncoder, load_backbone
from csrv2.config.run_config import BackboneConfig
from csrv2.data.catalog import get_task


def sample_texts(task: str, n: int, seed: int = 0) -> list[str]:
    """n texts of the task's train split drawn without replacement (all of them when it has fewer)."""
    texts = get_task(task).training_texts()[0]
    rows = np.random.default_rng(seed).permutation(len(texts))[:n]
    return [texts[i] for i in rows]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of a (N, d) with the same row of b (N, d)."""
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(norms, 1e-12)


def padding_share(encoder: TextEncoder, texts: list[str], batch_size: int) -> float:
    """Padding tokens / all batch tokens when `encoder` batches `texts` in its order (B × longest row per batch)."""
    ids = encoder.tokenizer(texts, truncation=True, max_length=encoder.max_length)["input_ids"]
    lengths = np.array([len(row) for row in ids])[encoder.length_order(texts)]
    batches = [lengths[i : i + batch_size] for i in range(0, len(lengths), batch_size)]
    total = sum(len(b) * int(b.max()) for b in batches)
    return 1 - int(lengths.sum()) / total


def encoders(backbone: str, threads: int, batch_size: int, max_length: int) -> dict[str, TextEncoder]:
    """The four paths, all batching by token count but torch-chars (csrv2's default order), which shares torch's
    model (a shallow copy with its own config)."""
    cfg = BackboneConfig(
        name=backbone, device="cpu", threads=threads, batch_size=batch_size, max_length=max_length, batch_order="tokens"
    )
    torch_encoder = load_backbone(cfg)
    by_chars = copy.copy(torch_encoder)
    by_chars.cfg = dataclasses.replace(cfg, batch_order="chars")
    onnx_encoder = load_backbone(dataclasses.replace(cfg, runtime="onnx"))
    int8_encoder = load_backbone(dataclasses.replace(cfg, runtime="onnx-int8"))
    return {"torch": torch_encoder, "torch-chars": by_chars, "onnx": onnx_encoder, "onnx-int8": int8_encoder}


def run_embed_speed(
    task: str = "r8",
    texts: int = 2000,
    threads: int = 1,
    rounds: int = 2,
    batch_size: int = 64,
    max_length: int = 256,
    backbone: str = "all-MiniLM-L6-v2",
) -> dict:
    """Times the four paths on the same texts in `rounds` alternating rounds; returns the settings, per path the
    round seconds, texts/s (fastest round), padding share, max |Δ| and lowest cosine against torch, and the
    onnx/torch and onnx-int8/torch ratios."""
    sample = sample_texts(task, texts)
    start = time.perf_counter()
    paths = encoders(backbone, threads, batch_size, max_length)
    load_seconds = time.perf_counter() - start
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    outputs: dict[str, np.ndarray] = {}
    for _ in range(rounds):
        for name, encoder in paths.items():
            start = time.perf_counter()
            outputs[name] = encoder.encode(sample, progress=False)  # (N, d)
            seconds[name].append(time.perf_counter() - start)
    per_path = {
        name: {
            "seconds": [round(s, 2) for s in seconds[name]],
            "texts_per_s": round(len(sample) / min(seconds[name]), 1),
            "padding_share": round(padding_share(encoder, sample, batch_size), 4),
            "max_abs_diff_vs_torch": float(np.abs(outputs[name] - outputs["torch"]).max()),
            "min_cosine_vs_torch": round(float(cosines(outputs[name], outputs["torch"]).min()), 5),
        }
        for name, encoder in paths.items()
    }
    settings = {"task": task, "texts": len(sample), "threads": threads, "rounds": rounds, "batch_size": batch_size}
    settings.update(
        max_length=max_length, backbone=backbone, torch=torch.__version__, load_seconds=round(load_seconds, 1)
    )
    ratio = {name: round(per_path[name]["texts_per_s"] / per_path["torch"]["texts_per_s"], 3) for name in per_path}
    return {
        "settings": settings,
        "paths": per_path,
        "onnx_over_torch": ratio["onnx"],
        "onnx_int8_over_torch": ratio["onnx-int8"],
    }


def format(result: dict) -> str:
    """The result as a markdown table, one row per path, with the settings above it."""
    s = result["settings"]
    lines = [
        f"{s['texts']} texts of {s['task']} (train split, seed 0), {s['backbone']}, max_length {s['max_length']}, "
        f"batch {s['batch_size']}, {s['threads']} thread(s), fastest of {s['rounds']} alternating rounds",
        "",
        "| path | texts/s | seconds per round | padding share | max abs diff vs torch | min cosine vs torch |",
        "|---|---|---|---|---|---|",
    ]
    for name, p in result["paths"].items():
        rounds = " / ".join(f"{x:.1f}" for x in p["seconds"])
        lines.append(
            f"| {name} | {p['texts_per_s']:.1f} | {rounds} | {100 * p['padding_share']:.1f} % | "
            f"{p['max_abs_diff_vs_torch']:.2e} | {p.get('min_cosine_vs_torch', 1.0):.5f} |"
        )
    lines += ["", f"onnx / torch: {result['onnx_over_torch']:.2f}×"]
    if "onnx_int8_over_torch" in result:
        lines[-1] += f", onnx-int8 / torch: {result['onnx_int8_over_torch']:.2f}×"
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="r8", help="catalog task whose train-split texts are embedded")
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of torch and of onnxruntime")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--backbone", default="all-MiniLM-L6-v2")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line after the table")
    args = parser.parse_args(argv)
    result = run_embed_speed(
        args.task, args.texts, args.threads, args.rounds, args.batch_size, args.max_length, args.backbone
    )
    print(format(result), flush=True)
    if args.json:
        print(json.dumps(result), flush=True)
