"""csrv2_backbone.json: which backbone feeds a saved head. The trainer writes it beside the final head; csrv2.load,
export and push_to_hub read it. A run saved before the record existed is read from its config.yaml, and a finetuned
run's own backbone/ takes the base model's place."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

from csrv2.assets import registry as assets
from csrv2.config.run_config import BackboneConfig, Config
from csrv2.files import subfolder_inside
from csrv2.runs.layout import BACKBONE_RECORD, CONFIG_FILE, FINETUNED_DIR

# What the record holds: the BackboneConfig fields that decide the embeddings, the asset's pinned wheels as its revision
# (a hub id's backbone.revision, None for local folders and the default branch), whether the model runs its own code,
# and the folder of a finetuned backbone relative to the record (or None).
RECORD_KEYS = ("name", "revision", "kind", "pooling", "normalize", "max_length", "query_prompt", "document_prompt")
RECORD_KEYS += ("image_size", "trust_remote_code", "finetuned")


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
    record_file, run_config = folder / BACKBONE_RECORD, folder / CONFIG_FILE
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
        tuned = subfolder_inside(folder, finetuned, str(record_file if record_file.is_file() else run_config))
        if not tuned.is_dir():
            raise FileNotFoundError(f"{tuned}: this run finetuned its backbone, and the saved backbone is missing")
        cfg = dataclasses.replace(cfg, name=str(tuned), revision="")  # the saved folder, not the hub revision
    return cfg
