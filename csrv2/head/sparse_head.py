"""The sparse head: a TopK sparse autoencoder with a tied decoder (CSR / CSRv2).

    pre   = W (x - b_pre) + b_lat          W: (h, d), b_pre: (d,), b_lat: (h,)
    z_k   = ReLU(TopK_k(pre))              at most k non-zeros per row
    x̂_k   = Wᵀ z_k + b_pre                 decoder tied to the encoder

The input x is a backbone embedding, L2-normalised by the caller (every csrv2 backbone does it).

The head is only the model: `forward` returns the unweighted loss parts and which latents fired. Weighting the parts
is the objective's job (csrv2.train.objectives); advancing the dead-latent counters (after the optimizer step, with
`fired` reduced over ranks under torchrun) is the trainer's.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from csrv2 import hub
from csrv2.config.run_config import HeadConfig
from csrv2.files import sha256_file
from csrv2.head import losses, st_format
from csrv2.head.codes import SparseCodes

WEIGHTS_NAME = "head.safetensors"
CONFIG_NAME = "csrv2_head.json"
# Where heads saved before the rename kept their spec: a name transformers and sentence-transformers claim for their
# own configs, so tools mistook a run folder for their model. Still read (after CONFIG_NAME), never written.
LEGACY_CONFIG_NAME = "config.json"
# Keys of specs written by earlier versions that the head no longer holds (loss weights now live in TrainConfig):
# read and ignored, so every head saved so far still loads.
RETIRED_KEYS = ("recon_4k_coef", "aux_coef")
# The HeadConfig fields a saved head records; the others (b_pre_init, balance_rate, dead_window_firings) only steer
# training and live in the run's config.yaml.
SPEC_KEYS = ("hidden", "k", "k_aux", "dead_steps")


def spec_path(folder: str | Path) -> Path:
    """The spec file of a saved head: csrv2_head.json, or config.json in a folder saved before the rename."""
    folder = Path(folder)
    for name in (CONFIG_NAME, LEGACY_CONFIG_NAME):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(
        f"{folder / CONFIG_NAME} not found (nor {LEGACY_CONFIG_NAME}, its name before): expected a folder written by "
        "SparseHead.save_pretrained"
    )


def head_folder(path: str | Path, revision: str | None = None) -> Path:
    """A local folder as it is; else a hub id → the local snapshot of its head files (hub.snapshot's errors)."""
    if Path(path).expanduser().exists() or not hub.looks_like_repo_id(str(path)):
        if revision:
            raise ValueError(f"revision={revision!r} applies to Hugging Face hub ids; {path} is a local path")
        return Path(path).expanduser()
    return hub.snapshot(str(path), revision, [WEIGHTS_NAME, CONFIG_NAME, LEGACY_CONFIG_NAME], "SparseHead")


class HeadOutput(NamedTuple):
    """What a training forward returns: codes, reconstruction and the unweighted loss parts (scalars)."""

    codes: SparseCodes  # (B, k) packed z_k
    recon: Tensor  # (B, d) x̂_k
    recon_loss: Tensor  # MSE(x, x̂_k), element mean
    recon_4k_loss: Tensor  # MSE(x, x̂_4k), x̂_4k from the top 4k of the same unmasked pre-activations
    aux_loss: Tensor  # AuxK on dead latents (0 when none is dead or k_aux = 0)
    fired: Tensor  # (h,) bool: latents with a positive activation in some row of this batch
    usage: Tensor  # (h,) float: rows of this batch in which each latent has a positive activation
    dead_fraction: Tensor  # share of latents dead before this step


class SparseHead(nn.Module):
    """TopK sparse autoencoder with a tied decoder; see the module docstring for the formula.

    d_in: backbone width d. hidden: latent width h. k: active latents per row (k ≤ h).
    k_aux: dead latents used by the AuxK loss (0 switches it off).
    dead_steps: a latent is dead once it has not fired for more than this many optimizer steps
        (the counters advance in `advance_dead_counters`, called by the trainer once per step).
    Saved as head.safetensors + csrv2_head.json (`save_pretrained` says what a run keeps beside them);
    `from_sentence_transformers` opens a sentence-transformers SparseAutoEncoder.
    """

    def __init__(self, d_in: int, hidden: int, k: int, k_aux: int = 256, dead_steps: int = 100):
        super().__init__()
        for name, value in (("d_in", d_in), ("hidden", hidden), ("k", k)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"SparseHead: {name} must be a positive int, got {value!r}")
        if k > hidden:
            raise ValueError(f"SparseHead: k={k} must be ≤ hidden={hidden}")
        if k_aux < 0 or dead_steps < 0:
            raise ValueError(f"SparseHead: k_aux ({k_aux}) and dead_steps ({dead_steps}) must be ≥ 0")
        self.d_in = d_in
        self.config = HeadConfig(hidden=hidden, k=k, k_aux=k_aux, dead_steps=dead_steps)
        # Rows are latent directions; unit-norm rows make pre-activations start as cosines.
        self.weight = nn.Parameter(F.normalize(torch.randn(hidden, d_in), dim=1))
        self.b_pre = nn.Parameter(torch.zeros(d_in))
        self.b_lat = nn.Parameter(torch.zeros(hidden))
        # Optimizer steps since each latent last fired; advanced by the trainer only (never by evaluation).
        self.register_buffer("steps_since_fired", torch.zeros(hidden, dtype=torch.long))

    @classmethod
    def from_config(cls, d_in: int, config: HeadConfig) -> SparseHead:
        return cls(d_in, config.hidden, config.k, config.k_aux, config.dead_steps)

    # -- shorthand for the config ------------------------------------------------------------------
    @property
    def hidden(self) -> int:
        return self.config.hidden

    @property
    def k(self) -> int:
        return self.config.k

    @property
    def k_aux(self) -> int:
        return self.config.k_aux

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

    # -- training forward ----------------------------------------------------------------------------
    def forward(
        self,
        x: Tensor,
        k: int | None = None,
        target: Tensor | None = None,
        auxk_loss: Callable[[Tensor, Tensor], Tensor] = losses.auxk_loss,
    ) -> HeadOutput:
        """Training forward on x (B, d) at k (default head.k; k-annealing passes k_t). Nothing is weighted here.

        target (B, d): what the reconstructions aim at; default x. A finetuned backbone passes x.detach()
            so the reconstruction pulls the head towards the backbone, never the backbone towards the head.
        auxk_loss(aux_recon (B, d), residual (B, d)) → scalar: the AuxK normaliser; under torchrun the trainer
            passes one computed over the global batch (csrv2.train.objectives.auxk_loss_across_ranks).
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

        dead = self.dead_mask()  # (h,) state before this step
        aux_loss = pre.new_zeros(())
        if self.k_aux > 0 and bool(dead.any()):
            dead_pre = pre.masked_fill(~dead, float("-inf"))  # a masked copy; `pre` stays intact
            aux_codes = self.topk_codes(dead_pre, min(self.k_aux, int(dead.sum())))
            aux_recon = self.decode(aux_codes, bias=False)
            aux_loss = auxk_loss(aux_recon, (target - recon).detach())

        with torch.no_grad():
            usage = torch.zeros(self.hidden, device=pre.device)
            usage.index_add_(0, codes.indices.reshape(-1), (codes.values > 0).reshape(-1).float())
        return HeadOutput(codes, recon, recon_loss, recon_4k_loss, aux_loss, usage > 0, usage, dead.float().mean())

    @torch.no_grad()
    def center(self, mean: Tensor) -> None:
        """Set b_pre to the data mean (d,) (head.b_pre_init=mean): with b_lat = 0, pre-activations then have zero
        mean over the data, and no latent wins every row's top-k through the offset all embeddings share."""
        if mean.shape != self.b_pre.shape:
            raise ValueError(f"center: mean has shape {tuple(mean.shape)}, b_pre has {tuple(self.b_pre.shape)}")
        self.b_pre.copy_(mean.to(self.b_pre))

    def centred(self, mean: Tensor) -> SparseHead:
        """A copy of this head with b_pre at `mean` (d,), this one unchanged: test-time centering — encode a corpus
        from another domain with b_pre at that corpus's mean (docs/general-head.md, "centring at test time")."""
        head = copy.deepcopy(self)
        head.center(mean)
        return head

    # -- dead-latent statistics (training state, advanced by the trainer) --------------------------
    def dead_mask(self) -> Tensor:
        """(h,) bool: latents that have not fired for more than dead_steps optimizer steps."""
        return self.steps_since_fired > self.config.dead_steps

    @torch.no_grad()
    def advance_dead_counters(self, fired: Tensor) -> None:
        """One optimizer step done: every counter +1, latents in `fired` (h,) bool back to 0."""
        self.steps_since_fired += 1
        self.steps_since_fired[fired] = 0

    def dead_fraction(self) -> float:
        """Share of latents that have not fired for more than dead_steps optimizer steps."""
        return float(self.dead_mask().float().mean())

    # -- persistence: safetensors + JSON, no pickle --------------------------------------------
    def save_pretrained(self, path: str | Path) -> None:
        """head.safetensors + csrv2_head.json ({d_in, hidden, k, k_aux, dead_steps, weights_sha256}); no pickle.

        The spec holds the head only. What feeds it lives beside it: a trained run folder also holds
        csrv2_backbone.json (the backbone's name, revision, kind, pooling, normalize, max_length, prompts; written by
        the trainer, read by `csrv2.load`), and `backbone/` when the backbone was finetuned. Heads saved before
        csrv2_head.json existed kept the spec in config.json; from_pretrained still reads them.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {name: t.detach().cpu().contiguous() for name, t in self.state_dict().items()}
        save_file(tensors, str(path / WEIGHTS_NAME))
        recorded = {key: value for key, value in asdict(self.config).items() if key in SPEC_KEYS}
        spec = {"d_in": self.d_in, **recorded, "weights_sha256": sha256_file(path / WEIGHTS_NAME)}
        (path / CONFIG_NAME).write_text(json.dumps(spec, indent=2) + "\n")

    @classmethod
    def from_pretrained(
        cls, path: str | Path, map_location: str | torch.device = "cpu", revision: str | None = None
    ) -> SparseHead:
        """Load a folder written by save_pretrained (any version), or a Hugging Face hub repo holding one (`org/name`,
        at `revision`) when no local folder of that name exists. Damage is named, never loaded: unreadable JSON,
        unknown keys, weights that do not match their recorded sha256, tensors of the wrong shape."""
        path = head_folder(path, revision)
        spec_file = spec_path(path)
        if not (path / WEIGHTS_NAME).is_file():
            raise FileNotFoundError(f"{path / WEIGHTS_NAME} not found: expected a folder written by save_pretrained")
        try:
            spec = json.loads(spec_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{spec_file}: not valid JSON ({err})") from None
        known = {"d_in", *SPEC_KEYS}
        allowed = known | set(RETIRED_KEYS) | {"weights_sha256"}
        if not isinstance(spec, dict) or set(spec) - allowed:
            unknown = sorted(set(spec) - allowed) if isinstance(spec, dict) else spec
            raise ValueError(f"{spec_file}: unknown keys {unknown}; a head config holds {sorted(known)}")
        recorded = spec.get("weights_sha256")  # heads saved before checksums were kept have none
        if recorded is not None and sha256_file(path / WEIGHTS_NAME) != recorded:
            raise ValueError(f"{path / WEIGHTS_NAME} does not match the sha256 in {spec_file.name} (corrupted)")
        kwargs = {key: value for key, value in spec.items() if key in known}
        try:
            with safe_open(str(path / WEIGHTS_NAME), framework="pt") as weights:  # the header only: names, shapes
                shapes = {name: tuple(weights.get_slice(name).get_shape()) for name in weights.keys()}  # noqa: SIM118
        except (SafetensorError, OSError) as err:  # a torn or foreign file
            raise ValueError(f"{path / WEIGHTS_NAME}: not a readable safetensors file ({err})") from None
        planned = cls._planned(kwargs, f"{spec_file}")
        cls._check_shapes(planned, shapes, f"{path / WEIGHTS_NAME} (for the spec in {spec_file.name})")
        try:
            tensors = load_file(str(path / WEIGHTS_NAME), device=str(map_location))
        except (SafetensorError, OSError) as err:
            raise ValueError(f"{path / WEIGHTS_NAME}: not the weights of this head ({err})") from None
        return cls._with_tensors(planned, tensors, str(path / WEIGHTS_NAME)).to(map_location)

    @classmethod
    def _planned(cls, kwargs: dict, where: str) -> SparseHead:
        """The head a spec describes, on the meta device: its checks run and its shapes are known, and nothing of
        its size is allocated (a spec claiming 60000 × 60000 would take 14 GB before a weight was read)."""
        try:
            with torch.device("meta"):
                return cls(**kwargs)
        except (TypeError, ValueError, RuntimeError, OverflowError) as err:  # RuntimeError: sizes beyond int64
            raise ValueError(f"{where}: not a valid head spec ({err})") from None

    @staticmethod
    def _check_shapes(planned: SparseHead, shapes: dict[str, tuple], where: str) -> None:
        """Refuse tensors whose names or shapes differ from what the planned head holds, naming the first."""
        expected = {name: tuple(t.shape) for name, t in planned.state_dict().items()}
        if set(shapes) != set(expected):
            raise ValueError(
                f"{where}: tensors {sorted(shapes)} are not the head's {sorted(expected)} (missing or unexpected)"
            )
        for name, shape in expected.items():
            if shapes[name] != shape:
                raise ValueError(f"{where}: {name} has shape {list(shapes[name])}, the spec needs {list(shape)}")

    @classmethod
    def _with_tensors(cls, planned: SparseHead, tensors: dict[str, Tensor], where: str) -> SparseHead:
        """The planned head holding `tensors` (shapes checked, cast to the head's dtypes), refusing NaN / inf: a
        head with them loads and encodes every input to NaN."""
        cls._check_shapes(planned, {name: tuple(t.shape) for name, t in tensors.items()}, where)
        state = planned.state_dict()
        cast = {}
        for name, tensor in tensors.items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise ValueError(f"{where}: {name} holds NaN or inf")
            cast[name] = tensor.to(state[name].dtype)
        planned.load_state_dict(cast, assign=True)  # the meta tensors become the loaded ones: one copy in memory
        return planned

    @classmethod
    def from_sentence_transformers(cls, path: str | Path) -> SparseHead:
        """The SparseAutoEncoder of a sentence-transformers SparseEncoder folder (or that module's own folder) as a
        SparseHead with the same codes. Reads ST's files directly (csrv2.head.st_format has the key map); refuses, naming
        it, what a SparseHead cannot express (normalize=true, unknown options or tensors, untied weights, modules
        after the autoencoder)."""
        folder = st_format.find_module(path)
        config, tensors = st_format.read_module(folder)
        kwargs, state = st_format.to_csrv2(config, tensors, str(folder))
        planned = cls._planned(kwargs, f"{folder}")  # before anything of the config's size is allocated
        return cls._with_tensors(planned, state, f"{folder}: tensors do not match its config")
