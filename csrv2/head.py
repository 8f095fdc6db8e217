"""The sparse head: a TopK sparse autoencoder with a tied decoder (CSR / CSRv2).

    pre   = W (x - b_pre) + b_lat          W: (h, d), b_pre: (d,), b_lat: (h,)
    z_k   = ReLU(TopK_k(pre))              at most k non-zeros per row
    x̂_k   = Wᵀ z_k + b_pre                 decoder tied to the encoder

The input x is a backbone embedding, L2-normalised by the caller (every csrv2 backbone does it).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.sparse
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from csrv2 import losses
from csrv2.distributed import any_across_ranks, auxk_loss_across_ranks

WEIGHTS_NAME = "head.safetensors"
CONFIG_NAME = "config.json"


@dataclass
class SparseCodes:
    """k-sparse codes packed as (indices, values); row i is Σ_j values[i, j] · e_{indices[i, j]} in R^dim.

    indices: (B, k) int64, values: (B, k) float. A zero value is an inactive slot (TopK may keep
    non-positive pre-activations, which the ReLU turns into zeros).
    """

    indices: Tensor
    values: Tensor
    dim: int

    def __post_init__(self):
        if self.indices.shape != self.values.shape or self.indices.dim() != 2:
            raise ValueError(
                f"SparseCodes: indices {tuple(self.indices.shape)} and values {tuple(self.values.shape)} "
                "must both be (B, k)"
            )
        if self.indices.numel() and (int(self.indices.min()) < 0 or int(self.indices.max()) >= self.dim):
            raise ValueError(f"SparseCodes: indices must lie in [0, dim={self.dim})")

    def __len__(self) -> int:
        return self.indices.shape[0]

    @property
    def k(self) -> int:
        return self.indices.shape[1]

    def to(self, device) -> SparseCodes:
        return SparseCodes(self.indices.to(device), self.values.to(device), self.dim)

    def to_dense(self) -> Tensor:
        """(B, dim) dense tensor; differentiable with respect to `values`."""
        dense = self.values.new_zeros(len(self), self.dim)
        return dense.scatter(1, self.indices, self.values)

    def to_scipy(self) -> scipy.sparse.csr_matrix:
        """(B, dim) scipy CSR matrix without explicit zeros."""
        values = self.values.detach().cpu().numpy()
        indices = self.indices.cpu().numpy()
        rows = np.repeat(np.arange(len(self)), self.k)
        matrix = scipy.sparse.csr_matrix((values.ravel(), (rows, indices.ravel())), shape=(len(self), self.dim))
        matrix.eliminate_zeros()
        matrix.sort_indices()
        return matrix

    def normalized(self, eps: float = 1e-12) -> SparseCodes:
        """Rows scaled to unit L2 norm (cosine scoring becomes a dot product)."""
        norms = self.values.norm(dim=1, keepdim=True).clamp_min(eps)
        return SparseCodes(self.indices, self.values / norms, self.dim)

    def __getitem__(self, rows) -> SparseCodes:
        return SparseCodes(self.indices[rows], self.values[rows], self.dim)

    @staticmethod
    def cat(parts: list[SparseCodes]) -> SparseCodes:
        dims = {p.dim for p in parts}
        ks = {p.k for p in parts}
        if len(dims) != 1 or len(ks) != 1:
            raise ValueError(f"SparseCodes.cat: parts differ in dim {dims} or k {ks}")
        return SparseCodes(torch.cat([p.indices for p in parts]), torch.cat([p.values for p in parts]), dims.pop())


class HeadOutput(NamedTuple):
    """What a training forward returns. Losses are scalars; `loss` = recon + recon_4k_coef·recon_4k + aux_coef·aux."""

    codes: SparseCodes  # (B, k) packed z_k
    recon: Tensor  # (B, d) x̂_k
    loss: Tensor  # autoencoder objective (contrastive terms are added by the trainer)
    recon_loss: Tensor  # MSE(x, x̂_k), element mean
    recon_4k_loss: Tensor  # MSE(x, x̂_4k), x̂_4k from the top 4k of the same unmasked pre-activations
    aux_loss: Tensor  # AuxK on dead latents (0 when none is dead or k_aux = 0)
    dead_fraction: Tensor  # share of latents dead before this step's update


@dataclass
class HeadSpec:
    """The JSON-serialisable arguments of SparseHead (written to config.json)."""

    d_in: int
    hidden: int
    k: int
    k_aux: int = 256
    dead_steps: int = 100
    recon_4k_coef: float = 1 / 8
    aux_coef: float = 1 / 32


class SparseHead(nn.Module):
    """TopK sparse autoencoder with a tied decoder; see the module docstring for the formula.

    d_in: backbone width d. hidden: latent width h. k: active latents per row (k ≤ h).
    k_aux: dead latents used by the AuxK loss (0 switches it off).
    dead_steps: a latent is dead once it has not fired for more than this many training steps.
    """

    def __init__(
        self,
        d_in: int,
        hidden: int,
        k: int,
        k_aux: int = 256,
        dead_steps: int = 100,
        recon_4k_coef: float = 1 / 8,
        aux_coef: float = 1 / 32,
    ):
        super().__init__()
        for name, value in (("d_in", d_in), ("hidden", hidden), ("k", k)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"SparseHead: {name} must be a positive int, got {value!r}")
        if k > hidden:
            raise ValueError(f"SparseHead: k={k} must be ≤ hidden={hidden}")
        if k_aux < 0 or dead_steps < 0:
            raise ValueError(f"SparseHead: k_aux ({k_aux}) and dead_steps ({dead_steps}) must be ≥ 0")
        self.spec = HeadSpec(d_in, hidden, k, k_aux, dead_steps, recon_4k_coef, aux_coef)
        # Rows are latent directions; unit-norm rows make pre-activations start as cosines.
        self.weight = nn.Parameter(F.normalize(torch.randn(hidden, d_in), dim=1))
        self.b_pre = nn.Parameter(torch.zeros(d_in))
        self.b_lat = nn.Parameter(torch.zeros(hidden))
        # Training steps since each latent last fired; advanced only by training forwards.
        self.register_buffer("steps_since_fired", torch.zeros(hidden, dtype=torch.long))

    # -- shorthand for the spec ------------------------------------------------------------------
    @property
    def d_in(self) -> int:
        return self.spec.d_in

    @property
    def hidden(self) -> int:
        return self.spec.hidden

    @property
    def k(self) -> int:
        return self.spec.k

    @property
    def k_aux(self) -> int:
        return self.spec.k_aux

    # -- encoder / decoder -----------------------------------------------------------------------
    def pre_activations(self, x: Tensor) -> Tensor:
        """(B, d) → (B, h), before TopK and ReLU."""
        if x.dim() != 2 or x.shape[1] != self.d_in:
            raise ValueError(f"SparseHead expects input of shape (B, {self.d_in}), got {tuple(x.shape)}")
        return F.linear(x - self.b_pre, self.weight, self.b_lat)

    def _check_k(self, k: int) -> int:
        if not isinstance(k, int) or not 1 <= k <= self.hidden:
            raise ValueError(f"k must be an int in [1, hidden={self.hidden}], got {k!r}")
        return k

    @staticmethod
    def topk_codes(pre: Tensor, k: int) -> SparseCodes:
        """ReLU(TopK_k(pre)) packed: (B, h) → SparseCodes with (B, k) indices and values."""
        top = pre.topk(k, dim=1)
        return SparseCodes(top.indices, F.relu(top.values), pre.shape[1])

    def encode(self, x: Tensor, k: int | None = None) -> SparseCodes:
        """(B, d) → SparseCodes (B, k) for any k ≤ hidden; k=None uses head.k. Never builds a (B, h) output."""
        return self.topk_codes(self.pre_activations(x), self._check_k(self.k if k is None else k))

    def decode(self, codes: SparseCodes, bias: bool = True, sparse: bool = False) -> Tensor:
        """SparseCodes → (B, d). sparse=True gathers only the k active rows of W (cost ∝ k, not h)."""
        if codes.dim != self.hidden:
            raise ValueError(f"codes have dim {codes.dim}, this head has hidden={self.hidden}")
        if sparse:
            out = F.embedding_bag(codes.indices, self.weight, per_sample_weights=codes.values, mode="sum")
        else:
            out = codes.to_dense() @ self.weight
        return out + self.b_pre if bias else out

    # -- training forward ------------------------------------------------------------------------
    def forward(self, x: Tensor, k: int | None = None, target: Tensor | None = None) -> HeadOutput:
        """Training forward on (B, d). k overrides head.k (k-annealing); 4k and AuxK follow PAPER.md.

        target (B, d): what the reconstructions aim at; default x. A finetuned backbone passes x.detach()
        so the reconstruction pulls the head towards the backbone, never the backbone towards the head.
        """
        k = self._check_k(self.k if k is None else k)
        target = x if target is None else target
        pre = self.pre_activations(x)
        # One sorted top-4k serves both terms: its first k entries are TopK_k of the same, unmasked pre.
        top = pre.topk(min(4 * k, self.hidden), dim=1)
        codes = SparseCodes(top.indices[:, :k], F.relu(top.values[:, :k]), self.hidden)
        codes_4k = SparseCodes(top.indices, F.relu(top.values), self.hidden)
        recon = self.decode(codes)
        recon_loss = losses.mse(recon, target)
        recon_4k_loss = losses.mse(self.decode(codes_4k), target)

        dead = self.steps_since_fired > self.spec.dead_steps  # (h,) state before this step
        aux_loss = pre.new_zeros(())
        if self.k_aux > 0 and bool(dead.any()):
            dead_pre = pre.masked_fill(~dead, float("-inf"))  # a masked copy; `pre` stays intact
            aux_codes = self.topk_codes(dead_pre, min(self.k_aux, int(dead.sum())))
            aux_recon = self.decode(aux_codes, bias=False)
            aux_loss = auxk_loss_across_ranks(aux_recon, (target - recon).detach())

        if self.training:
            with torch.no_grad():
                fired = torch.zeros_like(dead)
                fired[codes.indices[codes.values > 0]] = True
                fired = any_across_ranks(fired)  # under torchrun: fired on any rank's shard
                self.steps_since_fired += 1
                self.steps_since_fired[fired] = 0

        loss = recon_loss + self.spec.recon_4k_coef * recon_4k_loss + self.spec.aux_coef * aux_loss
        return HeadOutput(codes, recon, loss, recon_loss, recon_4k_loss, aux_loss, dead.float().mean())

    def dead_fraction(self) -> float:
        """Share of latents that have not fired for more than dead_steps training steps."""
        return float((self.steps_since_fired > self.spec.dead_steps).float().mean())

    # -- persistence: safetensors + JSON, no pickle --------------------------------------------
    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {name: t.detach().cpu().contiguous() for name, t in self.state_dict().items()}
        save_file(tensors, str(path / WEIGHTS_NAME))
        (path / CONFIG_NAME).write_text(json.dumps(asdict(self.spec), indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, path: str | Path, map_location: str | torch.device = "cpu") -> SparseHead:
        path = Path(path)
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path / name} not found: expected a folder written by save_pretrained")
        spec = json.loads((path / CONFIG_NAME).read_text())
        unknown = set(spec) - set(HeadSpec.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{path / CONFIG_NAME}: unknown keys {sorted(unknown)}")
        head = cls(**spec)
        head.load_state_dict(load_file(str(path / WEIGHTS_NAME), device=str(map_location)))
        return head.to(map_location)
