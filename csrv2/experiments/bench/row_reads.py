"""Random training batches from a memory-mapped embedding file that is not in the page cache: reading the rows
through the map (what training did before) against csrv2.data.stacked_rows.take_rows (one WILLNEED hint per row,
then positioned reads), and what each costs a training step.

    python scripts/bench_row_reads.py --rows 3000000 --folder /tmp/csrv2-rows   (runs this module's main)

Writes an (N, 384) float32 .npy of random rows into --folder once (N = 3M: 4.6 GB; kept for reruns; delete it
after). Each measurement starts with the file's pages dropped from the page cache (posix_fadvise DONTNEED, which
needs no privileges) or, for "cached", read once beforehand. Prints ms per batch of 128 sorted random rows and, for
training (a fresh head, h 1536, k 2, the csr objective, `--steps` steps after the data check, which reads the whole
file and so is followed by a drop), seconds per step, with each method's ratio to the map read of the same state.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from csrv2.config.run_config import Config
from csrv2.data import stacked_rows
from csrv2.data.prepare import training_data
from csrv2.experiments import measure
from csrv2.train import trainer as trainer_module

WIDTH, BATCH = 384, 128


def write_rows(path: Path, rows: int) -> None:
    if path.exists() and np.load(path, mmap_mode="r").shape == (rows, WIDTH):
        return
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, WIDTH))
    rng = np.random.default_rng(0)
    for start in range(0, rows, 200_000):
        block = rng.standard_normal((min(200_000, rows - start), WIDTH), dtype=np.float32)
        out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    out.flush()
    del out


def set_cache(path: Path, cached: bool) -> None:
    """Drop the file's pages from the page cache, or read it once so that all of it is there."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if cached:
            while os.read(fd, 64 << 20):
                pass
        else:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def through_the_map(x, rows: np.ndarray) -> np.ndarray:
    return np.asarray(x[rows])


def read_batches(path: Path, read, batches: list[np.ndarray], cached: bool) -> float:
    set_cache(path, cached)
    x = np.load(path, mmap_mode="r")
    start = time.perf_counter()
    for rows in batches:
        read(x, rows)
    return (time.perf_counter() - start) / len(batches)


def train_steps(path: Path, read, steps: int, cached: bool) -> float:
    with tempfile.TemporaryDirectory() as run_dir:
        config = Config.from_dict(
            {
                "output_dir": run_dir,
                "data": {"embeddings": str(path)},
                "head": {"hidden": 1536, "k": 2},
                "train": {"objective": "csr", "max_steps": steps, "batch_size": BATCH, "checkpoint_every": 10**9},
            }
        )
        data = training_data(config)  # the NaN/inf pass reads the whole file: the cache state is set after it
        set_cache(path, cached)
        trainer_module.take_rows = read
        try:
            seconds, _ = measure.timed(lambda: trainer_module.Trainer(config, data).fit())
        finally:
            trainer_module.take_rows = stacked_rows.take_rows
    return seconds / steps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--folder", type=Path, required=True, help="where the .npy is written (kept for reruns)")
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    path = args.folder / f"rows_{args.rows}x{WIDTH}.npy"
    write_rows(path, args.rows)
    rng = np.random.default_rng(1)
    batches = [np.sort(rng.choice(args.rows, BATCH, replace=False)) for _ in range(args.batches)]
    methods = {"through the map": through_the_map, "take_rows": stacked_rows.take_rows}
    print(f"{args.rows:,} rows × {WIDTH} float32 ({path.stat().st_size / 2**30:.1f} GiB), batches of {BATCH} rows")
    print(measure.describe_machine(), f"load average {os.getloadavg()[0]:.2f}")
    print("| what | page cache | " + " | ".join(methods) + " | take_rows / map |")
    print("|---|---|" + "---|" * (len(methods) + 1))
    for what, run, unit, scale in (
        (f"read one batch ({args.batches} batches)", lambda r, c: read_batches(path, r, batches, c), "ms", 1e3),
        (f"train one step ({args.steps} steps)", lambda r, c: train_steps(path, r, args.steps, c), "s", 1),
    ):
        for cached in (False, True):
            seconds = {name: run(read, cached) for name, read in methods.items()}
            cells = " | ".join(f"{seconds[name] * scale:.3g} {unit}" for name in methods)
            ratio = seconds["through the map"] / seconds["take_rows"]
            print(f"| {what} | {'cached' if cached else 'dropped'} | {cells} | {ratio:.2f}× faster |", flush=True)
