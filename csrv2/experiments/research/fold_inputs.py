"""What the fold protocol feeds a head besides the tasks themselves: the usage corpus U of a fold, the anisotropy
simulation, and test-time centering.

    usage_parts(tasks, prepared)   → [(N_t, d) float32]: each task's scored rows, duplicates removed
    usage_corpus(parts)            → (N_U, d): their union, duplicates removed (U of a fold)
    skew(x, a), mean_cosine(x)     the anisotropy option and how it is measured

Test-time centering (FoldsConfig.center_on = "task") encodes each task with head.centred(task.mean()), b_pre at the
mean of the task's own rows: an unsupervised statistic of the texts being encoded (no labels, no scores), which a
user has for the corpus they index. A general head is centred on its training mixture; on a task whose texts sit elsewhere, the
direction from the mixture mean to the task's mean adds the same offset to every row's pre-activations, and the few
latents aligned with it win most rows' top-k.
"""

from __future__ import annotations

import numpy as np

from csrv2.data.prepare import PreparedTask
from csrv2.data.tasks import ROLES

NOT_USAGE_ROLES = {"train"}  # a classification task's `train` role is its classifier's training rows, not U


def usage_parts(tasks: list[str], prepared: dict[str, PreparedTask]) -> list[np.ndarray]:
    """Each task's scored embedding rows except classifier training rows, duplicates removed within the task (a
    retrieval corpus shared by train and test queries counts once). [(N_t, d) float32], in `tasks` order."""
    parts = []
    for t in tasks:
        roles = [r for r in ROLES[prepared[t].task.type] if r not in NOT_USAGE_ROLES]
        rows = np.concatenate([np.asarray(prepared[t].task.arrays[r], dtype=np.float32) for r in roles])
        parts.append(np.unique(rows, axis=0))
    return parts


def usage_corpus(parts: list[np.ndarray]) -> np.ndarray:
    """U of a fold: the union of its tasks' usage_parts, duplicates removed. (N_U, d) float32."""
    return np.unique(np.concatenate(parts), axis=0)


def skew(x: np.ndarray, a: float, seed: int = 0) -> np.ndarray:
    """(N, d) unit rows → (x + a·u) / ‖x + a·u‖ with u a fixed random unit vector (the anisotropy option)."""
    u = np.random.default_rng(seed).standard_normal(x.shape[1])
    y = np.asarray(x, dtype=np.float32) + np.float32(a) * (u / np.linalg.norm(u)).astype(np.float32)
    return y / np.linalg.norm(y, axis=1, keepdims=True)


def mean_cosine(x: np.ndarray, rows: int = 2000, seed: int = 0) -> float:
    """Mean pairwise cosine of (a sample of) unit rows x (N, d), pairs of distinct rows."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.random.default_rng(seed).choice(len(x), min(rows, len(x)), replace=False)]
    s = x.sum(0)
    return float((s @ s - len(x)) / (len(x) * (len(x) - 1)))
