"""Run configuration: nested dataclasses, strict YAML loading and dotted overrides.

Each field's docstring (the string literal under it) is its documentation; `Config.describe()` prints them.
YAML files hold only the differences from these defaults.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from csrv2.config import strict
from csrv2.config.strict import ConfigError
from csrv2.config.task_spec import TaskSpec, read_run_yaml

# Keys a config once held elsewhere: (old dotted key → new dotted key); loading an old run folder moves them.
MOVED_KEYS = {"head.recon_4k_coef": "train.recon_4k_coef", "head.aux_coef": "train.aux_coef"}


@dataclass
class HeadConfig:
    hidden: int = 1536
    """Latent width h (4 × 384 for all-MiniLM-L6-v2; the paper uses 4 × the backbone width)."""
    k: int = 8
    """Active latents per embedding after training (the final k of annealing). 1 ≤ k ≤ hidden."""
    k_aux: int = 256
    """Dead latents the AuxK loss may use; 0 switches AuxK off."""
    dead_steps: int = 100
    """A latent is dead once it has not fired for more than this many optimizer steps."""
    dead_window_firings: float = 0.0
    """AuxK window in expected firings instead of steps: > 0 sets dead_steps to the steps in which a latent used
    uniformly would fire this often (⌈f · hidden / (batch_size · k)⌉, at the final k). The authors' setting (10 steps,
    top-4k at k = 2, h = 16,384, batch 128) is f ≈ 0.6: about half the latents in the AuxK pool. 0 → dead_steps."""
    b_pre_init: Literal["zero", "mean"] = "zero"
    """Initial pre-encoder bias: zero (both papers), or the mean of the training embeddings, so pre-activations
    start with zero mean over the data and no latent wins every row's top-k through the data's shared offset."""
    balance_rate: float = 0.0
    """Usage balancing: after every step each latent's encoder bias moves by ± balance_rate, up when it fired less
    than the mean latent, down when more (a sign update, the bias is in the selection and the value); the total
    shift stays within ± 100 × balance_rate. 0 → off."""


@dataclass
class BackboneConfig:
    name: str = "all-MiniLM-L6-v2"
    """Embedding model: an asset name (`csrv2 assets list`), a Hugging Face id, or a local folder."""
    kind: Literal["text", "vision"] = "text"
    """Modality of the backbone."""
    pooling: Literal["mean", "cls", "last", "max"] = "mean"
    """Token pooling: mean, cls, last token (e5-mistral, Qwen3) or max; must match an ST folder's 1_Pooling."""
    max_length: int = 256
    """Tokens per text; longer texts are truncated."""
    query_prompt: str = ""
    """Instruction prepended to queries (retrieval, reranking); empty for none."""
    document_prompt: str = ""
    """Instruction prepended to every other text; empty for none."""
    batch_size: int = 64
    """Texts or images per backbone forward when embedding."""
    normalize: bool = True
    """L2-normalise embeddings (the head expects unit vectors); must be true for an ST folder with Normalize."""
    revision: str = ""
    """Hugging Face hub ids: the branch, tag or commit to load; empty → the default branch."""
    trust_remote_code: bool = False
    """Hugging Face ids and folders: allow the model's own Python code to run (models with custom architectures)."""
    device: str = "auto"
    """Device for the backbone: auto (CUDA when present), cpu, cuda, cuda:1, ..."""
    image_size: int = 224
    """Vision backbones: images are resized to image_size × image_size (224 for EfficientNet-Lite0, ImageNet)."""
    runtime: Literal["torch", "onnx", "onnx-fused", "onnx-int8", "openvino", "openvino-bf16", "ct2", "ct2-int8"] = (
        "torch"
    )
    """Where a text backbone's forward runs. torch: the transformers model, on CPU or GPU. Every other runtime runs on
    the CPU from a file converted once from the loaded model, cached under $CSRV2_HOME/onnx/ and keyed by its weights
    (csrv2.backbone.runtimes). Exact (torch's embeddings within 1e-5 per coordinate): onnx (onnxruntime; pip install
    'csrv2[onnx]'), onnx-fused (onnxruntime's BERT fusions, BERT-like encoders), openvino (OpenVINO at f32;
    'csrv2[openvino]'), ct2 (CTranslate2; 'csrv2[ct2]'). Not exact, faster: openvino-bf16 (bf16 matrix products on
    CPUs with AMX / AVX-512 BF16, f32 elsewhere; cosine to torch ≥ 0.9999, scores within 0.2 points), ct2-int8 and
    onnx-int8 (int8 weights; cosine ≥ 0.96, scores within 0.4 points). On the 2-core machine here (1 thread) the exact
    ones ran at 0.8–1.3× torch's texts/s depending on text length and batch, openvino-bf16 at 2.9–3.7×
    (docs/benchmarks.md, "Embedding speed on the CPU"): measure on yours with scripts/bench_embed.py."""
    batch_order: Literal["chars", "tokens"] = "chars"
    """How texts are grouped into batches, longest first: by characters, or by token count after truncation. tokens
    pads less (R8: 3.6 % padding instead of 19.9 %, 15 % more texts/s) but moves embeddings by up to ~2e-7, which
    can move a table's last digit: the documented tables were made with chars, the default."""
    threads: int = 0
    """CPU threads of one forward (intra-op threads of torch or of the onnxruntime session) while embedding; 0 → the
    library's default (all cores)."""


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
    mixture: list[str] = field(default_factory=list)
    """Train one head on the train splits of several tasks (instead of data.task). Each task's labels keep their own
    namespace (class 3 of one task is no positive of class 3 of another); batches mix the tasks."""
    max_per_task: int = 8000
    """Rows drawn (seed 0, so every run shares the cache) from each data.mixture task (and data.unlabeled task,
    unless data.max_unlabeled_per_task says otherwise); 0 → all."""
    unlabeled: list[str] = field(default_factory=list)
    """Tasks whose train-split texts (retrieval: and corpus) are added without labels: each row is a class of its
    own, a negative for every other row. Texts already in the labelled rows are not added twice."""
    max_unlabeled_per_task: int | None = None
    """Rows drawn (seed 1) from each data.unlabeled task, before texts already present are dropped; None → as
    data.max_per_task, 0 → all (more text than the labelled mixture holds, e.g. a task's whole train split)."""


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
    uniformity_coef: float = 0.0
    """Weight γ of a uniformity term added to the supervised contrastive one (csrv2): the in-batch InfoNCE of the
    codes against themselves (CSR's term), which pushes different rows onto different latents. 0 → off."""
    distill_coef: float = 0.0
    """Weight δ of KL(each row's in-batch neighbours under the embeddings ‖ under the codes), neighbours a softmax of
    cosine / temperature. Unsupervised; csrv2 and csr. 0 → off."""
    distill_temperature: float = 0.0
    """τ_t of the embeddings' side of distill_coef (smaller: nearest neighbours only); 0 → train.temperature."""
    subclusters: int = 0
    """Finer contrastive labels (csrv2): split every class of ≥ 2·subclusters rows into this many k-means
    sub-classes of its embeddings. 0 → classes as given."""
    pseudo_label_rows: int = 0
    """Unlabelled rows (data.unlabeled) grouped by k-means into clusters of about this many rows, each a pseudo-class.
    0 → every unlabelled row stays a class of its own."""
    recon_weight: float = 1.0
    """Weight of the autoencoder loss (L_k + recon_4k_coef·L_4k + aux_coef·L_aux) against the contrastive term."""
    recon_4k_coef: float = 0.125
    """Weight of the reconstruction from the top 4k latents (1/8 in both papers)."""
    aux_coef: float = 0.03125
    """Weight α of the AuxK dead-latent loss (1/32 in the authors' release)."""
    lr: float = 4e-4
    """Adam learning rate of the head (constant, after warmup_steps). The authors train text heads at 1e-4 with far
    more steps (docs/method.md); on the small runs here 4e-4 scored higher for MRL, CSR and CSRv2 alike
    (docs/reproduction.md)."""
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
    report_to: list[Literal["tensorboard"]] = field(default_factory=list)
    """Also send every metrics.jsonl line to these writers: tensorboard (<output_dir>/tensorboard/, needs the
    tensorboard extra: pip install 'csrv2[tensorboard]'). Empty → metrics.jsonl only."""
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
    detect_anomaly: bool = False
    """Run forward and backward under torch.autograd.detect_anomaly: slow, but a NaN or inf names the operation that
    made it. Every step checks its loss parts and gradient norm for finiteness either way."""
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
    center_on: Literal["trained", "task"] = "trained"
    """b_pre when scoring: as trained, or "task": each task encoded with b_pre at the mean of its own rows (test-time
    centering, SparseHead.centred; spreads a general head's latents on texts of another domain)."""


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
        raw = _move_old_keys(strict.apply_overrides(raw or {}, overrides))  # a copy: the caller's dicts stay
        config = strict.build(cls, raw)
        config.validate()
        return config

    @classmethod
    def from_yaml(cls, path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
        """Load YAML (only differences from the defaults; input paths relative to its folder), then overrides."""
        raw = read_run_yaml(path)  # relative input paths read from the YAML's folder where they exist there
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
        for key, value in _numbers(self):  # NaN slips through every comparison below, inf through most
            if not math.isfinite(value):
                raise ConfigError(f"{key}={value} is not a finite number")
        if not self.output_dir.strip():
            raise ConfigError("output_dir is empty: name the run folder (e.g. runs/my-run)")
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
            "train.adam_eps": t.adam_eps,
        }
        for key, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{key} must be > 0, got {value}")
        non_negative = {
            "head.k_aux": h.k_aux,
            "head.dead_steps": h.dead_steps,
            "head.dead_window_firings": h.dead_window_firings,
            "head.balance_rate": h.balance_rate,
            "data.max_per_task": self.data.max_per_task,
            "data.max_unlabeled_per_task": self.data.max_unlabeled_per_task or 0,  # None: as data.max_per_task
            "train.uniformity_coef": t.uniformity_coef,
            "train.distill_coef": t.distill_coef,
            "train.distill_temperature": t.distill_temperature,
            "train.subclusters": t.subclusters,
            "train.pseudo_label_rows": t.pseudo_label_rows,
            "train.epochs": t.epochs,
            "train.max_steps": t.max_steps,
            "train.contrastive_coef": t.contrastive_coef,
            "train.recon_weight": t.recon_weight,
            "train.aux_coef": t.aux_coef,
            "train.recon_4k_coef": t.recon_4k_coef,
            "train.seed": t.seed,
            "train.backbone_lr": t.backbone_lr,
            "backbone.threads": self.backbone.threads,
        }
        for key, value in non_negative.items():
            if value < 0:
                raise ConfigError(f"{key} must be ≥ 0, got {value}")
        if h.k > h.hidden:
            raise ConfigError(f"head.k={h.k} must be ≤ head.hidden={h.hidden}")
        if self.anneal and t.k_start < h.k:
            raise ConfigError(f"train.k_start={t.k_start} must be ≥ head.k={h.k} (the final k of annealing)")
        if t.objective == "mrl" and t.distill_coef > 0:
            raise ConfigError("train.distill_coef needs sparse codes: train.objective csrv2 or csr, or leave it 0")
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
        frozen_only = [
            key
            for key, on in (
                ("head.b_pre_init=mean", h.b_pre_init == "mean"),
                ("train.subclusters", t.subclusters > 0),
                ("train.pseudo_label_rows", t.pseudo_label_rows > 0),
            )
            if on
        ]
        if t.backbone != "frozen" and frozen_only:
            raise ConfigError(
                f"{', '.join(frozen_only)} read the backbone's embeddings before training: they need "
                f"train.backbone=frozen, not {t.backbone}"
            )
        if t.keep_checkpoints < 1:
            raise ConfigError(f"train.keep_checkpoints must be ≥ 1, got {t.keep_checkpoints}")
        bad_ks = [k for k in self.eval.ks if not 1 <= k <= h.hidden]
        if bad_ks:
            raise ConfigError(f"eval.ks {bad_ks} must lie in [1, head.hidden={h.hidden}]")
        for i, spec in enumerate(self.data.tasks):
            where = f"data.tasks[{spec.name or i}]"
            if not 0.0 <= spec.test_fraction < 1.0:
                raise ConfigError(f"{where}.test_fraction must lie in [0, 1), got {spec.test_fraction}")
            if spec.seed < 0 or spec.score_max <= 0:
                raise ConfigError(f"{where}: seed must be ≥ 0 and score_max > 0, got {spec.seed} and {spec.score_max}")
        names = [s.name for s in self.data.tasks]
        if any(not n for n in names) or len(set(names)) != len(names):
            raise ConfigError(f"data.tasks: every task needs a unique, non-empty name, got {names}")
        d = self.data
        sources = [
            key
            for key, value in (("data.embeddings", d.embeddings), ("data.task", d.task), ("data.mixture", d.mixture))
            if value
        ]
        if len(sources) > 1:
            raise ConfigError(f"{' and '.join(sources)} are all set: give one source of training data")
        for key, names in (("data.mixture", d.mixture), ("data.unlabeled", d.unlabeled)):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ConfigError(f"{key} names {repeated} more than once")
        if d.unlabeled and not (d.task or d.mixture):
            raise ConfigError("data.unlabeled adds rows to task training data: set data.task or data.mixture too")

    # -- documentation ---------------------------------------------------------------------------
    @classmethod
    def describe(cls) -> str:
        """Every option with its type, default and docstring, as text."""
        return strict.describe(cls)


def _numbers(obj, prefix: str = ""):
    """(dotted key, value) of every float field of a config, nested sections and lists of sections included."""
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            yield from _numbers(value, key + ".")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if dataclasses.is_dataclass(item):
                    yield from _numbers(item, f"{key}[{i}].")
        elif isinstance(value, float):
            yield key, value


def _move_old_keys(raw: dict) -> dict:
    """Move keys a config once held elsewhere (MOVED_KEYS) to their place now; both given → ConfigError."""
    for old, new in MOVED_KEYS.items():
        (old_section, old_key), (new_section, new_key) = old.split("."), new.split(".")
        section = raw.get(old_section)
        if isinstance(section, dict) and old_key in section:
            target = raw.setdefault(new_section, {})
            if isinstance(target, dict) and new_key in target:
                raise ConfigError(f"{old} and {new} are both set; {old} is the old name of {new}: keep {new}")
            if isinstance(target, dict):
                target[new_key] = section.pop(old_key)
    return raw
