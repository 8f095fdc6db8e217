"""Run configuration: nested dataclasses, strict YAML loading and dotted overrides.

Each field's docstring (the string literal under it) is its documentation; `Config.describe()` prints them.
YAML files hold only the differences from these defaults.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import inspect
import textwrap
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A config key, value or combination that cannot be used; the message names it."""


@dataclass
class HeadConfig:
    hidden: int = 1536
    """Latent width h (4 × 384 for all-MiniLM-L6-v2; the paper uses 4 × the backbone width)."""
    k: int = 8
    """Active latents per embedding after training (the final k of annealing). 1 ≤ k ≤ hidden."""
    k_aux: int = 256
    """Dead latents the AuxK loss may use; 0 switches AuxK off."""
    dead_steps: int = 100
    """A latent is dead once it has not fired for more than this many training steps."""
    recon_4k_coef: float = 0.125
    """Weight of the reconstruction from the top 4k latents."""
    aux_coef: float = 0.03125
    """Weight α of the AuxK loss."""


@dataclass
class BackboneConfig:
    name: str = "all-MiniLM-L6-v2"
    """Embedding model: an asset name (`python -m csrv2.assets list`), a Hugging Face id, or a local folder."""
    kind: Literal["text", "vision"] = "text"
    """Modality of the backbone."""
    pooling: Literal["mean", "cls", "last"] = "mean"
    """Token pooling for text models: mean (sentence-transformers), cls, or last token (e5-mistral, Qwen3)."""
    max_length: int = 256
    """Tokens per text; longer texts are truncated."""
    query_prompt: str = ""
    """Instruction prepended to queries (retrieval, reranking); empty for none."""
    document_prompt: str = ""
    """Instruction prepended to every other text; empty for none."""
    batch_size: int = 64
    """Texts or images per backbone forward when embedding."""
    normalize: bool = True
    """L2-normalise embeddings (the head expects unit vectors)."""
    device: str = "auto"
    """Device for the backbone: auto (CUDA when present), cpu, cuda, cuda:1, ..."""
    image_size: int = 224
    """Vision backbones: images are resized to image_size × image_size (224 for EfficientNet-Lite0, ImageNet)."""


@dataclass
class TaskSpec:
    name: str = ""
    """Name the task is referred to by (data.task, eval.tasks)."""
    type: Literal[
        "classification", "clustering", "retrieval", "sts", "pair_classification", "reranking", "image_classification"
    ] = "classification"
    """MTEB task type; decides how the split is scored and how contrastive labels are made."""
    path: str = ""
    """A local .csv / .tsv / .jsonl / .parquet file, or `hf:<dataset id>[:<config name>]` for a Hugging Face dataset.
    retrieval / reranking: a folder with corpus.jsonl, queries.jsonl and qrels.tsv / rerank.jsonl (csrv2.data)."""
    text_column: str = "text"
    """Column holding the text (or the first text of a pair)."""
    text2_column: str = "text2"
    """Column holding the second text of a pair (sts, pair_classification)."""
    label_column: str = "label"
    """Column holding the class (classification, clustering) or the 0/1 pair label."""
    score_column: str = "score"
    """Column holding the gold similarity (sts)."""
    score_max: float = 5.0
    """Top of the sts gold scale; a pair scoring ≥ 0.6 × score_max (3 of 5) is a contrastive positive."""
    split_column: str = ""
    """Column naming each row's split (train / test); empty → a seeded, stratified split."""
    test_fraction: float = 0.2
    """Share of rows held out for testing when the file has no split column."""
    seed: int = 0
    """Seed of the held-out split."""


@dataclass
class DataConfig:
    embeddings: str = ""
    """Training embeddings given directly: a .npy (N, d) or a .npz with `embeddings` and optional `labels`."""
    eval_embeddings: str = ""
    """Optional held-out embeddings (.npy/.npz like `embeddings`) scored after training."""
    task: str = ""
    """A catalog task (or one defined in `tasks`) whose train split, embedded by the backbone, trains the head."""
    tasks: list[TaskSpec] = field(default_factory=list)
    """Tasks defined in YAML from local files or Hugging Face datasets, usable by name like catalog tasks."""


@dataclass
class TrainConfig:
    objective: Literal["csrv2", "csr", "mrl"] = "csrv2"
    """csrv2: k-annealing + supervised contrastive on class-aware batches. csr: fixed k + self InfoNCE.
    mrl: the Matryoshka baseline (a linear head, supervised contrastive on every prefix of dims 2…64)."""
    anneal: bool | None = None
    """Override k-annealing (default: on for csrv2, off for csr)."""
    k_start: int = 64
    """First k of annealing (clipped to hidden / 4); must be ≥ head.k when annealing."""
    decay_fraction: float = 0.7
    """Share of the steps over which k falls linearly from k_start to head.k."""
    contrastive_coef: float = 0.1
    """Weight β of the contrastive term."""
    temperature: float = 0.2
    """Temperature τ of the contrastive term."""
    positives_inside_log: bool = True
    """Supervised contrastive form: positives summed inside the log (authors' code) or averaged outside (Khosla)."""
    samples_per_class: int = 4
    """Class-aware batching (csrv2): examples of one class placed together in a batch."""
    recon_weight: float = 1.0
    """Weight of the autoencoder loss (L_k + L_4k/8 + α·L_aux) against the contrastive term."""
    lr: float = 4e-4
    """Adam learning rate of the head (constant, after warmup_steps). PAPER.md trains text heads at 1e-4 with far more
    steps; on the small runs here 4e-4 scored higher for MRL, CSR and CSRv2 alike (docs/reproduction.md)."""
    adam_eps: float = 6.25e-10
    """Adam epsilon (the authors' value)."""
    batch_size: int = 128
    """Embeddings per optimiser step."""
    epochs: int = 10
    """Passes over the training embeddings."""
    max_steps: int = 0
    """Stop after this many steps instead of `epochs` passes; 0 → epochs decide."""
    seed: int = 0
    """Seed of the head's initialisation and of batch order."""
    log_every: int = 10
    """Steps between lines of metrics.jsonl."""
    checkpoint_every: int = 500
    """Steps between checkpoints (a final one is always written)."""
    keep_checkpoints: int = 2
    """Most recent checkpoints kept in the run folder."""
    resume: bool = False
    """Continue from the last complete checkpoint in output_dir."""
    device: str = "auto"
    """Device for the head: auto (CUDA when present), cpu, cuda, ..."""
    backbone: Literal["frozen", "full", "lora"] = "frozen"
    """frozen: train the head on cached backbone embeddings. full: train backbone and head jointly through the
    sparse objective. lora: the same through LoRA adapters (needs peft), for backbones too big to train whole."""
    backbone_lr: float = 1e-5
    """Adam learning rate of the backbone (full / lora); the head keeps `lr`."""
    warmup_steps: int = 0
    """Linear learning-rate warmup from 0 over this many steps (both groups)."""
    max_grad_norm: float = 0.0
    """Clip the global gradient norm to this value; 0 → no clipping."""
    grad_accum_steps: int = 1
    """Micro-batches per optimiser step; the contrastive loss sees one micro-batch (gathered over ranks)."""
    gradient_checkpointing: bool = False
    """Recompute backbone activations in the backward pass (less memory, ~30 % more time)."""
    bf16: bool = True
    """bf16 autocast for the backbone on CUDA (ignored on CPU)."""
    lora_r: int = 8
    """LoRA rank (train.backbone=lora)."""
    lora_alpha: int = 16
    """LoRA scaling α (train.backbone=lora)."""
    lora_target_modules: list[str] = field(default_factory=list)
    """Modules that get LoRA adapters; empty → peft's default for the model type."""


@dataclass
class EvalConfig:
    ks: list[int] = field(default_factory=lambda: [2, 4, 8, 16, 32, 64])
    """Sparsity levels scored after training (each a top-k of the same pre-activations)."""
    tasks: list[str] = field(default_factory=list)
    """Tasks scored after training; empty → the training task's test split."""
    after_training: bool = True
    """Score the run when training ends: print a table and write eval.json into the run folder."""


@dataclass
class Config:
    output_dir: str = "runs/default"
    """Run folder: config.yaml, metrics.jsonl, checkpoints and the trained head are written here."""
    head: HeadConfig = field(default_factory=HeadConfig)
    """The sparse head."""
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    """The embedding model under the head."""
    data: DataConfig = field(default_factory=DataConfig)
    """What the head trains on."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Optimisation and objective."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """What is scored after training."""

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, raw: dict, overrides: list[str] | tuple[str, ...] = ()) -> Config:
        raw = _apply_overrides(copy.deepcopy(raw or {}), overrides)  # never write into the caller's dicts
        config = _build(cls, raw, "")
        config.validate()
        return config

    @classmethod
    def from_yaml(cls, path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
        """Load YAML (only differences from the defaults), then apply `section.key=value` overrides."""
        raw: Any = {}
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise ConfigError(f"config file {path} does not exist")
            try:
                raw = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as err:
                raise ConfigError(f"{path}: not valid YAML: {err}") from err
            if not isinstance(raw, dict):
                raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
        try:
            return cls.from_dict(raw, overrides)
        except ConfigError as err:
            raise ConfigError(f"{path or 'config'}: {err}") from None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    # -- checks ----------------------------------------------------------------------------------
    @property
    def anneal(self) -> bool:
        return self.train.objective == "csrv2" if self.train.anneal is None else self.train.anneal

    def validate(self) -> None:
        h, t = self.head, self.train
        positive = {
            "head.hidden": h.hidden,
            "head.k": h.k,
            "train.batch_size": t.batch_size,
            "train.lr": t.lr,
            "train.temperature": t.temperature,
            "train.log_every": t.log_every,
            "train.checkpoint_every": t.checkpoint_every,
            "train.samples_per_class": t.samples_per_class,
            "backbone.max_length": self.backbone.max_length,
            "backbone.batch_size": self.backbone.batch_size,
        }
        for key, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{key} must be > 0, got {value}")
        non_negative = {
            "head.k_aux": h.k_aux,
            "head.dead_steps": h.dead_steps,
            "train.epochs": t.epochs,
            "train.max_steps": t.max_steps,
            "train.contrastive_coef": t.contrastive_coef,
            "train.recon_weight": t.recon_weight,
            "head.aux_coef": h.aux_coef,
            "head.recon_4k_coef": h.recon_4k_coef,
        }
        for key, value in non_negative.items():
            if value < 0:
                raise ConfigError(f"{key} must be ≥ 0, got {value}")
        if h.k > h.hidden:
            raise ConfigError(f"head.k={h.k} must be ≤ head.hidden={h.hidden}")
        if self.anneal and t.k_start < h.k:
            raise ConfigError(f"train.k_start={t.k_start} must be ≥ head.k={h.k} (the final k of annealing)")
        if not 0.0 <= t.decay_fraction <= 1.0:
            raise ConfigError(f"train.decay_fraction must lie in [0, 1], got {t.decay_fraction}")
        if t.epochs == 0 and t.max_steps == 0:
            raise ConfigError("train.epochs and train.max_steps are both 0: set one of them")
        if t.grad_accum_steps < 1 or t.warmup_steps < 0 or t.max_grad_norm < 0 or t.backbone_lr < 0:
            raise ConfigError(
                "train.grad_accum_steps must be ≥ 1 and train.warmup_steps, max_grad_norm, backbone_lr ≥ 0, got "
                f"{t.grad_accum_steps}, {t.warmup_steps}, {t.max_grad_norm}, {t.backbone_lr}"
            )
        if t.backbone != "frozen" and (self.data.embeddings or not self.data.task):
            raise ConfigError(
                f"train.backbone={t.backbone} trains on texts: set data.task (not data.embeddings) to a task to embed"
            )
        if t.keep_checkpoints < 1:
            raise ConfigError(f"train.keep_checkpoints must be ≥ 1, got {t.keep_checkpoints}")
        bad_ks = [k for k in self.eval.ks if not 1 <= k <= h.hidden]
        if bad_ks:
            raise ConfigError(f"eval.ks {bad_ks} must lie in [1, head.hidden={h.hidden}]")
        names = [s.name for s in self.data.tasks]
        if any(not n for n in names) or len(set(names)) != len(names):
            raise ConfigError(f"data.tasks: every task needs a unique, non-empty name, got {names}")
        if self.data.embeddings and self.data.task:
            raise ConfigError("data.embeddings and data.task are both set: give one source of training data")

    # -- documentation ---------------------------------------------------------------------------
    @classmethod
    def describe(cls) -> str:
        """Every option with its type, default and docstring, as text."""
        lines: list[str] = []
        _describe(cls, "", lines)
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _describe(cls: type, prefix: str, lines: list[str]) -> None:
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    default = cls()
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            lines.append(f"{key}: {docs.get(f.name, '')}")
            _describe(hints[f.name], key + ".", lines)
        else:
            lines.append(f"  {key} = {getattr(default, f.name)!r}  — {docs.get(f.name, '')}")


def _apply_overrides(raw: dict, overrides) -> dict:
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        dotted, text = item.split("=", 1)
        keys = dotted.strip().split(".")
        node = raw
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {key} is not a section")
        try:
            node[keys[-1]] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {err}") from err
    return raw


def _build(cls: type, raw: Any, prefix: str):
    where = prefix.rstrip(".") or "the top level"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(raw).__name__}: {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [key for key in raw if key not in names]
    if unknown:
        raise ConfigError(f"unknown key {prefix}{unknown[0]!s}; valid keys in {where}: {', '.join(names)}")
    values = {key: _coerce(value, hints[key], f"{prefix}{key}") for key, value in raw.items()}
    return cls(**values)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check `value` against the type `hint`; the error names `key` and what is valid."""
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key + ".")
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}={value!r} is not valid; choose one of {', '.join(map(repr, args))}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}={value!r} matches none of {hint}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {type(value).__name__}: {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {type(value).__name__}: {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key} must be a number, got {type(value).__name__}: {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {type(value).__name__}: {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {type(value).__name__}: {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {type(value).__name__}: {value!r}")
        return value
    if hint is Any:
        return value
    raise TypeError(f"config field {key} has a type the loader does not handle: {hint}")
