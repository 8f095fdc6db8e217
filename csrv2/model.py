"""`csrv2.load(run_or_folder)`: a trained head with the backbone that feeds it, ready for texts or images.

    model = csrv2.load("runs/quickstart")           # a run folder, or any head folder with csrv2_backbone.json
    codes = model.encode(["a text", ...], k=2)      # SparseCodes (N, 2) over the head's h latents
    dense = model.embed_dense(["a text", ...])      # float32 (N, d): the backbone embeddings the head encodes

Which backbone feeds the head: `csrv2_backbone.json` beside it (written by the trainer with the final head), else the
run's `config.yaml` (runs trained before the record existed); a finetuned run's own `backbone/` folder takes the base
model's place in both cases. `backbone=` overrides them (a head folder on its own, a head trained on data.embeddings).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from csrv2 import assets
from csrv2.backbones import TextEncoder, VisionEncoder, load_backbone
from csrv2.codes import SparseCodes
from csrv2.config import BackboneConfig, Config
from csrv2.head import SparseHead

BACKBONE_RECORD = "csrv2_backbone.json"
FINETUNED_DIR = "backbone"  # a finetuned run's backbone, inside the run folder
# What the record holds: the BackboneConfig fields that decide the embeddings, the asset's pinned wheel as its revision
# (None for hub ids and local folders), and the folder of a finetuned backbone relative to the record (or None).
RECORD_KEYS = ("name", "revision", "kind", "pooling", "normalize", "max_length", "query_prompt", "document_prompt")
RECORD_KEYS += ("image_size", "finetuned")
CHUNK = 8192  # rows per head.encode call: the (rows, h) pre-activations stay small


def backbone_record(cfg: BackboneConfig, finetuned: bool) -> dict:
    """The csrv2_backbone.json of a head trained on embeddings of `cfg` (finetuned: the run saved backbone/)."""
    name = cfg.name
    if name not in assets.ASSETS and Path(name).expanduser().exists():
        name = str(Path(name).expanduser().resolve())  # a local folder: found from any working directory
    revision = " + ".join(assets.ASSETS[name].packages) if name in assets.ASSETS else None
    fields = {key: getattr(cfg, key) for key in RECORD_KEYS if hasattr(cfg, key) and key != "name"}
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
        pinned = " + ".join(assets.ASSETS[record["name"]].packages) if record["name"] in assets.ASSETS else None
        if record.get("revision") and record["revision"] != pinned:
            warnings.warn(
                f"{record_file}: the head was trained on {record['name']} {record['revision']}, this csrv2 fetches "
                f"{pinned}; its codes may differ from the trained ones",
                stacklevel=3,
            )
        fields = {k: v for k, v in record.items() if k in BackboneConfig.__dataclass_fields__}
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
        cfg = dataclasses.replace(cfg, name=str(tuned))
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


def load(run_or_folder: str | Path, backbone: BackboneConfig | str | None = None, device: str = "auto") -> SparseModel:
    """The head saved in `run_or_folder` with its backbone (module docstring) on `device` (auto: CUDA when present).
    backbone: a name (asset, hub id, local folder) or a BackboneConfig, instead of the one the folder records."""
    folder = Path(run_or_folder).expanduser()
    if (folder / "mrl_config.json").is_file():
        raise ValueError(f"{folder} holds a Matryoshka (MRL) head; csrv2.load opens sparse heads")
    head = SparseHead.from_pretrained(folder)
    if backbone is None:
        cfg = backbone_config(folder)
    else:
        cfg = BackboneConfig(name=backbone) if isinstance(backbone, str) else backbone
    cfg = dataclasses.replace(cfg, device=device)
    encoder = load_backbone(cfg)
    model = SparseModel(head, encoder, cfg)
    model.head.to(encoder.device)
    return model
