"""Embeddings a user gives as files: a .npy (N, d) or a .npz with `embeddings` (N, d) and optional `labels` (N,).

embeddings, labels = load_arrays("train.npz", field="data.embeddings")   # labels None for a .npy
embeddings, labels = check_arrays(embeddings, labels, "data.embeddings")  # errors name the row
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from csrv2.data.stacked_rows import row_blocks

Arrays = tuple[np.ndarray, np.ndarray | None]  # embeddings (N, d), labels (N,) int64 or None


def load_arrays(path: str | Path, field: str = "data.embeddings") -> Arrays:
    """Read (embeddings (N, d), labels (N,) | None); a .npy is memory-mapped. `field` names the config key in errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{field}: {path} does not exist (a .npy, or a .npz with `embeddings` and `labels`; `csrv2 embed --config "
            f"quickstart --out {path.with_name(path.stem.removesuffix('_test') + '.npz')}` writes one from R8, any "
            "run config with data.task from its task)"
        )
    if path.suffix == ".npy":
        return np.load(path, mmap_mode="r"), None
    if path.suffix != ".npz":
        raise ValueError(f"{field}: {path} must be a .npy or .npz file")
    with np.load(path) as archive:
        if "embeddings" not in archive:
            raise ValueError(
                f"{field}: {path} has arrays {archive.files}; it needs `embeddings` (and optional `labels`)"
            )
        labels = archive["labels"] if "labels" in archive else None
        return archive["embeddings"], labels


# Rows whose norms are checked when unit rows are expected: all of them up to this many, else an even sample (the
# norms of every row of a 10M-row cache would cost more CPU than the rest of the check).
UNIT_CHECK_ROWS = 200_000
UNIT_TOLERANCE = 1e-3
FINITE_CHECK_VALUES = 1 << 24  # values per block of the NaN/inf check: 64 MiB of float32 whatever d is


def check_arrays(embeddings: np.ndarray, labels: np.ndarray | None, where: str, unit_rows: bool = False) -> Arrays:
    """Refuse what a head cannot train on: not (N ≥ 2, d), a non-finite row, labels of another length or not
    integers, and — with unit_rows — a row whose L2 norm is not 1 (the head expects normalised embeddings).

    Returns the embeddings unchanged and the labels as int64."""
    if embeddings.ndim != 2 or embeddings.shape[0] < 2:
        raise ValueError(f"{where}: embeddings must be (N ≥ 2, d), got shape {embeddings.shape}")
    n = embeddings.shape[0]
    sample = unit_check_rows(n) if unit_rows else np.empty(0, np.int64)  # sorted rows whose L2 norm is checked
    bad_rows, norms = [], []
    # One pass in blocks (file reads for a memory map): a 10M-row cache is read once, never held whole, no (N, d)
    # mask is built, and the sampled rows' norms come from the same blocks instead of pages touched through the map.
    for start, block in row_blocks(embeddings, max(1, FINITE_CHECK_VALUES // embeddings.shape[1])):
        bad_rows.append(start + np.flatnonzero(~np.isfinite(block).all(axis=1)))
        lo, hi = np.searchsorted(sample, [start, start + len(block)])
        norms.append(np.linalg.norm(np.asarray(block[sample[lo:hi] - start], dtype=np.float64), axis=1))
    bad = np.concatenate(bad_rows)
    if bad.size:
        raise ValueError(f"{where}: embeddings row {bad[0]} has NaN or inf ({bad.size} such rows)")
    if unit_rows:
        check_unit_norms(sample, np.concatenate(norms), where)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (embeddings.shape[0],):
            raise ValueError(f"{where}: labels must be ({embeddings.shape[0]},), got {labels.shape}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"{where}: labels must be integers, got dtype {labels.dtype}")
        labels = labels.astype(np.int64)
    return embeddings, labels


def unit_check_rows(n: int) -> np.ndarray:
    """The rows whose norms are checked: all of them up to UNIT_CHECK_ROWS, else that many evenly spaced (sorted)."""
    return np.arange(n) if n <= UNIT_CHECK_ROWS else np.linspace(0, n - 1, UNIT_CHECK_ROWS).astype(np.int64)


def check_unit_norms(rows: np.ndarray, norms: np.ndarray, where: str) -> None:
    """Every checked row (rows (m,), their L2 norms (m,)) has norm 1 ± UNIT_TOLERANCE; the first that has not is
    named, with how many checked rows are off."""
    off = np.flatnonzero(np.abs(norms - 1.0) > UNIT_TOLERANCE)
    if off.size:
        row = int(rows[off[0]])
        what = "is all zeros" if norms[off[0]] == 0 else f"has L2 norm {norms[off[0]]:.4g}"
        raise ValueError(
            f"{where}: embeddings row {row} {what} ({off.size} of {len(rows)} checked rows are not unit vectors); "
            "the head expects L2-normalised embeddings: divide each row by its norm (and drop all-zero rows)"
        )
