"""Baselines the paper compares against: a learned Matryoshka (MRL) head, plain truncation and PCA."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

MRL_DIMS = [2, 4, 8, 16, 32, 64]
MRL_WEIGHTS_NAME = "mrl.safetensors"
MRL_CONFIG_NAME = "mrl_config.json"


class MRLHead(nn.Module):
    """A learned linear map d → d over a frozen backbone whose first m outputs are trained to be an
    embedding of their own for every m in `dims` (Matryoshka). `encode(x, dim=m)` is the m-prefix, L2-normalised.
    """

    def __init__(self, d_in: int, dims: list[int] | None = None):
        super().__init__()
        self.dims = sorted(dims or [m for m in MRL_DIMS if m <= d_in])
        if not self.dims or self.dims[-1] > d_in:
            raise ValueError(f"MRLHead: dims {self.dims} must be non-empty and ≤ d_in={d_in}")
        self.d_in = d_in
        self.linear = nn.Linear(d_in, d_in)
        # Start from the identity so the untrained head equals truncating the backbone.
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(d_in))
            self.linear.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        """(B, d) → (B, d); the loss looks at each prefix."""
        return self.linear(x)

    def encode(self, x: Tensor, dim: int) -> Tensor:
        """(B, d) → (B, dim), the first `dim` outputs, L2-normalised."""
        return F.normalize(self.linear(x)[:, :dim], dim=1)

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, str(path / MRL_WEIGHTS_NAME)
        )
        (path / MRL_CONFIG_NAME).write_text(json.dumps({"d_in": self.d_in, "dims": self.dims}) + "\n")

    @classmethod
    def from_pretrained(cls, path: str | Path) -> MRLHead:
        path = Path(path)
        head = cls(**json.loads((path / MRL_CONFIG_NAME).read_text()))
        head.load_state_dict(load_file(str(path / MRL_WEIGHTS_NAME)))
        return head


def truncate(x: Tensor, dim: int) -> Tensor:
    """The floor: the backbone's first `dim` coordinates, L2-normalised. (B, d) → (B, dim)."""
    return F.normalize(x[:, :dim], dim=1)


def fit_pca(train_x: np.ndarray, n_components: int) -> Callable[[np.ndarray], np.ndarray]:
    """PCA on the train embeddings (N, d); returns x (M, d) → (M, n_components) projections, by falling variance."""
    mean = train_x.mean(axis=0, dtype=np.float64)  # (d,)
    # float64 SVD: the trailing components of near-degenerate embeddings are unstable in float32
    _, _, vt = np.linalg.svd(np.asarray(train_x, dtype=np.float64) - mean, full_matrices=False)
    comps = vt[:n_components].astype(np.float32)  # (n_components, d)
    return lambda x: (np.asarray(x, dtype=np.float32) - mean.astype(np.float32)) @ comps.T
