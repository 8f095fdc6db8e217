"""A trained run as a sentence-transformers SparseEncoder folder (the way back: SparseHead.from_sentence_transformers).

    to_sentence_transformers("runs/quickstart", "runs/quickstart-st")
    SparseEncoder("runs/quickstart-st").encode(texts, max_active_dims=k)   # = csrv2.load("runs/quickstart").encode(
                                                                           #   texts, k), as dense (N, h) vectors
The folder holds Transformer → Pooling → Normalize (when backbone.normalize) → SparseAutoEncoder, written by
sentence-transformers itself (its model card included). The head's tensors go through csrv2.head.st_format's key map;
ST's SparseAutoEncoder option normalize (a LayerNorm of the input) has no csrv2 equivalent and is written false.
The backbone's prompts become the model's "query" and "document" prompts, "document" the default when it is set.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from csrv2 import extras
from csrv2.backbone.encoders import resolve_model_path
from csrv2.files import atomic_write_dir, check_replaceable
from csrv2.head import st_format
from csrv2.model import load

POOLING = {
    "mean": "mean",
    "cls": "cls",
    "last": "lasttoken",
    "max": "max",
}  # csrv2 backbone.pooling → ST Pooling's pooling_mode
KIND = "sentence-transformers export"  # the kind csrv2.files records in the folder's marker
LAYOUT = (["Transformer", "Pooling", "SparseAutoEncoder"], ["Transformer", "Pooling", "Normalize", "SparseAutoEncoder"])


def is_previous_export(folder: Path) -> bool:
    """Whether `folder` is an export written before folders carried csrv2's marker: a SparseEncoder whose modules
    are exactly the ones to_sentence_transformers writes (Transformer → Pooling → [Normalize] → SparseAutoEncoder)."""
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        types = [str(module["type"]).rsplit(".", 1)[-1] for module in modules]
    except (OSError, ValueError, TypeError, KeyError):
        return False
    return types in LAYOUT


def st_classes():
    """(SparseEncoder, Transformer, Pooling, Normalize, SparseAutoEncoder) from sentence-transformers 6, or 5."""
    SparseEncoder = extras.require("sentence_transformers", "exporting to sentence-transformers").SparseEncoder
    try:  # 6.x moved the modules (the old path still works, with a deprecation warning)
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
        from sentence_transformers.sparse_encoder.modules import SparseAutoEncoder
    except ImportError:
        from sentence_transformers.models import Normalize, Pooling, Transformer
        from sentence_transformers.sparse_encoder.models import SparseAutoEncoder
    return SparseEncoder, Transformer, Pooling, Normalize, SparseAutoEncoder


def to_sentence_transformers(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Write the run's head and backbone (csrv2.load's: a finetuned run's own) as a SparseEncoder folder; returns it.
    The folder appears complete or not at all (csrv2.files.atomic_write_dir). An existing out_dir is replaced only
    when it is a previous export (its csrv2 marker, or the module layout this function writes); anything else — a
    folder of the user's own files, a run folder, the current directory — is refused (csrv2.files.RefusedFolder)
    before any work. Text backbones only. out_dir must lie outside run_dir: replacing it would delete the run (and
    sentence-transformers' README.md would take the place of the run's own model card)."""
    run, out = Path(run_dir).resolve(), Path(out_dir).resolve()
    if out == run or run in out.parents or out in run.parents:
        raise ValueError(f"out_dir {out_dir} overlaps the run folder {run_dir}: export to a folder outside the run")
    check_replaceable(out_dir, KIND, legacy=is_previous_export)
    model = load(run_dir, device="cpu")
    cfg = model.backbone_config
    if cfg.kind != "text":
        raise ValueError(
            f"{run_dir}: backbone.kind={cfg.kind!r}; the sentence-transformers export takes text backbones"
        )
    SparseEncoder, Transformer, Pooling, Normalize, SparseAutoEncoder = st_classes()
    head = model.head.cpu()
    st_config, tensors = st_format.from_csrv2({"d_in": head.d_in, **asdict(head.config)}, head.state_dict())
    autoencoder = SparseAutoEncoder(**st_config)
    autoencoder.load_state_dict(tensors)
    transformer = Transformer(resolve_model_path(cfg.name), max_seq_length=model.backbone.max_length)
    modules = [transformer, Pooling(model.backbone.dim, POOLING[cfg.pooling])]
    modules += [Normalize()] if cfg.normalize else []
    encoder = SparseEncoder(
        modules=[*modules, autoencoder],
        prompts={"query": cfg.query_prompt, "document": cfg.document_prompt},
        default_prompt_name="document" if cfg.document_prompt else None,
        device="cpu",
    )
    return atomic_write_dir(out_dir, lambda tmp: encoder.save(str(tmp)), KIND, legacy=is_previous_export)
