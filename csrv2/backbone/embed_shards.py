"""One embedding-cache file written by several processes (`csrv2 embed` under torchrun): rows split by rank, joined once.

    values = compute_sharded(path, n, compute, world, key)   # every rank calls it; returns when `path` is complete

Each rank embeds its contiguous slice of the n rows (np.array_split order, as csrv2.distributed.World.shard) into a
part file beside the cache file, `<name>.part<r>-of-<size>.npy`, written atomically, and reports its rows and sha256.
Rank 0 writes the manifest `<name>.manifest.json` {"key", "file", "rows", "parts": [{"file", "rows", "sha256"}]},
re-hashes every part against it, then streams the parts in rank order into the final file — the same name and the
same bytes that np.save of the whole (n, d) float32 array gives in one process — under a temporary name renamed
only when complete (csrv2.files.atomic_write), with its `.sha256` sidecar. The parts and the manifest are removed
afterwards. A rank that dies before its part is reported leaves no final file: rank 0 assembles only after every
rank's report, and torchrun stops the others when one fails.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch.distributed as dist

from csrv2.distributed import World
from csrv2.files import atomic_save_npy, atomic_write, atomic_write_json, record_digest, sha256_file

COPY_ROWS = 65536  # rows copied from a part into the final file at a time (memory stays O(COPY_ROWS · d))


def part_path(path: Path, rank: int, size: int) -> Path:
    return path.with_name(f"{path.name}.part{rank}-of-{size}.npy")


def manifest_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.manifest.json")


def compute_sharded(path: Path, n: int, compute: Callable[[slice], np.ndarray], world: World, key: str) -> None:
    """Fill the cache file `path` with compute(rows) of every rank's slice; on return it exists (all ranks).

    compute(slice(lo, hi)) → (hi - lo, d) float32. Raises on every rank when rank 0 cannot assemble the parts."""
    lo, hi = _bounds(n, world)
    part = part_path(path, world.rank, world.size)
    values = np.asarray(compute(slice(lo, hi)), dtype=np.float32) if hi > lo else np.zeros((0, 0), np.float32)
    atomic_save_npy(part, values)
    report = {"file": part.name, "rows": hi - lo, "width": int(values.shape[1]), "sha256": sha256_file(part)}
    reports: list = [None] * world.size
    dist.all_gather_object(reports, report)  # every rank's part is on disk once this returns
    problem = ""
    if world.is_main:
        try:
            assemble(path, n, key, reports)
        except (OSError, ValueError) as err:  # named on every rank, never left waiting
            problem = f"{type(err).__name__}: {err}"
    status = [problem]
    dist.broadcast_object_list(status, src=0)
    if status[0]:
        raise RuntimeError(f"embedding cache {path.name}: rank 0 could not join the parts: {status[0]}")


def _bounds(n: int, world: World) -> tuple[int, int]:
    """This rank's contiguous rows [lo, hi): np.array_split sizes (the first n % size ranks get one more)."""
    base, extra = divmod(n, world.size)
    lo = world.rank * base + min(world.rank, extra)
    return lo, lo + base + (world.rank < extra)


def assemble(path: Path, n: int, key: str, reports: list[dict]) -> None:
    """Rank 0: manifest, check every part against it, stream them into `path` (atomic), sidecar; remove the parts."""
    manifest = {"key": key, "file": path.name, "rows": n, "parts": [{**r} for r in reports]}
    atomic_write_json(manifest_path(path), manifest)
    widths = {r["width"] for r in reports if r["rows"]}
    if sum(r["rows"] for r in reports) != n or len(widths) != 1:
        raise ValueError(f"{manifest_path(path)}: parts hold {[r['rows'] for r in reports]} rows of widths {widths}")
    width = widths.pop()
    for r in reports:
        file = path.with_name(r["file"])
        if not file.is_file() or sha256_file(file) != r["sha256"]:
            raise ValueError(f"{file}: missing or does not match the sha256 its rank reported")

    def write(tmp: Path) -> None:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, width))
        row = 0
        for r in reports:
            if not r["rows"]:
                continue
            part = np.load(path.with_name(r["file"]), mmap_mode="r")
            if part.shape != (r["rows"], width):
                raise ValueError(
                    f"{path.with_name(r['file'])}: shape {part.shape}, manifest says ({r['rows']}, {width})"
                )
            for start in range(0, len(part), COPY_ROWS):
                chunk = part[start : start + COPY_ROWS]
                out[row + start : row + start + len(chunk)] = chunk
            row += len(part)
        out.flush()
        del out

    atomic_write(path, write)
    record_digest(path)
    for r in reports:
        path.with_name(r["file"]).unlink(missing_ok=True)
    manifest_path(path).unlink(missing_ok=True)
