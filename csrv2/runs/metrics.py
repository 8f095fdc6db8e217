"""metrics.jsonl: one JSON line per logged step of a run (every loss part, k_t, lr, dead %, elapsed seconds).

train.report_to sends the same lines to other writers as well: "tensorboard" → <run_dir>/tensorboard/ (event files,
one scalar per key, at the line's step; needs the `tensorboard` extra: pip install 'csrv2[tensorboard]').
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch

from csrv2 import distributed, extras
from csrv2.files import atomic_write_text
from csrv2.runs.layout import TENSORBOARD_DIR


def tensorboard_writer_class():
    """torch's SummaryWriter; a missing tensorboard package is a MissingExtra naming the extra to install."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # ImportError without the tensorboard package
    except ImportError as err:
        raise extras.MissingExtra(extras.message("tensorboard", "train.report_to=['tensorboard']")) from err
    return SummaryWriter


class MetricsLog:
    """metrics.jsonl: one line per logged step, each loss part averaged over the steps since the last line
    (and over ranks); only rank 0 writes."""

    def __init__(self, path: Path, keep_until: int, world: distributed.World, report_to: list[str] | tuple = ()):
        self.path, self.world = path, world
        self.sums: dict[str, float] = {}
        self.count = 0
        self.started = time.perf_counter()
        # On resume, drop lines written after the checkpoint so no step is logged twice.
        if world.is_main and path.exists():
            kept = [line for line in read_metrics(path) if line["step"] <= keep_until]
            atomic_write_text(path, "".join(json.dumps(line) + "\n" for line in kept))
        self.writers = []
        if world.is_main and "tensorboard" in report_to:
            # purge_step: on resume, TensorBoard hides the events logged after the checkpoint, as the lines above go
            purge = keep_until + 1 if keep_until > 0 else None
            self.writers.append(tensorboard_writer_class()(str(path.parent / TENSORBOARD_DIR), purge_step=purge))

    def add(self, parts: dict[str, torch.Tensor]) -> dict[str, float]:
        """Accumulate one micro-batch's parts; returns them as floats."""
        values = {name: float(value.detach()) for name, value in parts.items()}
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.count += 1
        return values

    def flush(self, **fields) -> dict:
        means = {name: total / max(self.count, 1) for name, total in self.sums.items()}
        line = {**fields, **distributed.average_scalars(means, self.world)}
        line["elapsed_s"] = round(time.perf_counter() - self.started, 3)
        if not all(math.isfinite(v) for v in line.values() if isinstance(v, float)):
            raise FloatingPointError(f"non-finite loss at step {fields.get('step')}: {line}")
        if self.world.is_main:
            with self.path.open("a") as f:
                f.write(json.dumps(line) + "\n")
            for writer in self.writers:
                for key, value in line.items():
                    if key != "step" and isinstance(value, int | float):
                        writer.add_scalar(key, value, global_step=line.get("step"))
                writer.flush()
        self.sums, self.count = {}, 0
        return line

    def close(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers = []


def read_metrics(path: Path) -> list[dict]:
    """The lines of a metrics.jsonl. A torn last line (a kill mid-write) is dropped with a note; a bad line before
    the last is an error naming it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number < len(lines):
                raise ValueError(f"{path}, line {number}: not a JSON metrics line ({err})") from err
            print(f"{path}: dropped a torn last line (line {number}, {len(line)} characters)", file=sys.stderr)
    return out
