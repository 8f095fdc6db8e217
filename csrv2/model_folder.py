"""A SparseModel as one folder that sentence-transformers and csrv2 both open: what `SparseModel.save`,
`csrv2.export.to_sentence_transformers` and `push_to_hub` write.

<folder>/
    modules.json, config_sentence_transformers.json, sentence_bert_config.json, config.json, model.safetensors,
    tokenizer files, 1_Pooling/, 2_Normalize/, 3_SparseAutoEncoder/
                            a sentence-transformers SparseEncoder: Transformer (the backbone's files at the root; a
                            finetuned run's own) → Pooling → Normalize (when backbone.normalize) → SparseAutoEncoder
                            (the head through csrv2.head.st_format), similarity_fn_name "cosine" (csrv2's scoring),
                            the backbone's prompts as "query" / "document" ("document" the default when it is set)
    head.safetensors, csrv2_head.json   the same head for csrv2 (SparseHead.from_pretrained)
    csrv2_backbone.json     the run's backbone record with finetuned: "." (the backbone is this folder's dense part)
    eval.json, README.md    the run's scores and the model card (csrv2.runs.model_card, hub metadata included)

`SparseEncoder(folder)` and `csrv2.load(folder)` give the same codes (tests/test_export.py). The head's tensors are
stored twice (the two formats), the head's size only: 2.4 MB at h = 1536, d = 384. Vision backbones have no
sentence-transformers form: their folder holds the csrv2 files only (and a finetuned run's backbone/).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from csrv2 import extras
from csrv2.backbone.encoders import resolve_model_path
from csrv2.files import atomic_write_dir, check_replaceable
from csrv2.head import st_format
from csrv2.runs.backbone_record import backbone_record
from csrv2.runs.layout import BACKBONE_RECORD, CARD_FILE, CONFIG_FILE, EVAL_FILE, FINETUNED_DIR
from csrv2.runs.model_card import render_model_card

if TYPE_CHECKING:  # the model is passed in; this module does not load one
    from csrv2.model import SparseModel

POOLING = {"mean": "mean", "cls": "cls", "last": "lasttoken", "max": "max"}  # backbone.pooling → ST's pooling_mode
SIMILARITY = "cosine"  # csrv2's scoring (csrv2.evaluation.scoring) and SparseModel.similarity
KIND = "sentence-transformers export"  # the kind csrv2.files records in the folder's marker (csrv2_output.json)
LAYOUT = (["Transformer", "Pooling", "SparseAutoEncoder"], ["Transformer", "Pooling", "Normalize", "SparseAutoEncoder"])
ST_FILES = (  # what a SparseEncoder folder of a text backbone holds (push_to_hub uploads them, csrv2.load fetches them)
    "modules.json",
    "config_sentence_transformers.json",
    "sentence_bert_config.json",
    "config.json",
    "model.safetensors",
    "tokenizer*",
    "vocab*",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "*.model",
    "[0-9]_*/*",
)


def st_classes():
    """(SparseEncoder, Transformer, Pooling, Normalize, SparseAutoEncoder) from sentence-transformers 6, or 5."""
    SparseEncoder = extras.require("sentence_transformers", "a sentence-transformers model folder").SparseEncoder
    try:  # 6.x moved the modules (the old path still works, with a deprecation warning)
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
        from sentence_transformers.sparse_encoder.modules import SparseAutoEncoder
    except ImportError:
        from sentence_transformers.models import Normalize, Pooling, Transformer
        from sentence_transformers.sparse_encoder.models import SparseAutoEncoder
    return SparseEncoder, Transformer, Pooling, Normalize, SparseAutoEncoder


def is_previous_export(folder: Path) -> bool:
    """Whether `folder` is an export written before folders carried csrv2's marker: a SparseEncoder whose modules
    are exactly the ones this module writes (Transformer → Pooling → [Normalize] → SparseAutoEncoder)."""
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        types = [str(module["type"]).rsplit(".", 1)[-1] for module in modules]
    except (OSError, ValueError, TypeError, KeyError):
        return False
    return types in LAYOUT


def is_model_folder(folder: str | Path) -> bool:
    """A folder this module wrote (a SparseEncoder folder with csrv2's head and record beside it)."""
    folder = Path(folder)
    return (folder / "modules.json").is_file() and (folder / BACKBONE_RECORD).is_file()


def write_model_folder(model: SparseModel, out: str | Path, name: str | None = None) -> Path:
    """Write `model` as the folder of the module docstring; returns it. The folder appears complete or not at all
    (csrv2.files.atomic_write_dir). An existing `out` is replaced only when it is a previous export (its csrv2 marker,
    or the module layout written here); anything else is refused (csrv2.files.RefusedFolder) before any work. name:
    what the card's snippets load (a hub id; default `out` as given). The run folder the model was loaded from
    (model.folder) gives the record, scores and card; out must lie outside it."""
    out = Path(out)
    source = Path(model.folder).resolve() if model.folder is not None else None
    target = out.resolve()
    if source is not None and (target == source or source in target.parents or target in source.parents):
        raise ValueError(f"{out} overlaps the run folder {model.folder}: write the model folder outside the run")
    check_replaceable(out, KIND, legacy=is_previous_export)
    cfg = model.backbone_config
    text = cfg.kind == "text"
    record_file = source / BACKBONE_RECORD if source is not None else None
    if record_file is not None and record_file.is_file():
        record = json.loads(record_file.read_text(encoding="utf-8"))
    else:  # a head loaded with backbone=, or a run saved before the record: what feeds it now
        record = backbone_record(cfg, finetuned=False)
    sentence_transformers = st_classes() if text else None  # a missing package fails before anything is written

    def write(tmp: Path) -> None:
        if text:
            _write_sentence_transformers(model, tmp, sentence_transformers)
            record["finetuned"] = "."  # the backbone is this folder's Transformer → Pooling → Normalize
        elif record.get("finetuned"):
            shutil.copytree(Path(cfg.name), tmp / FINETUNED_DIR)
            record["finetuned"] = FINETUNED_DIR
        model.head.cpu().save_pretrained(tmp)
        (tmp / BACKBONE_RECORD).write_text(json.dumps(record, indent=2) + "\n")
        if source is not None and (source / EVAL_FILE).is_file():
            shutil.copy(source / EVAL_FILE, tmp / EVAL_FILE)
        if source is not None and (source / CONFIG_FILE).is_file():
            card = render_model_card(source, name or str(out), model_folder=text)
            (tmp / CARD_FILE).write_text(card, encoding="utf-8")
        elif (tmp / CARD_FILE).exists():  # sentence-transformers' own card would say it trained the model
            (tmp / CARD_FILE).unlink()

    try:
        return atomic_write_dir(out, write, KIND, legacy=is_previous_export)
    finally:
        model.head.to(model.backbone.device)


def _write_sentence_transformers(model: SparseModel, folder: Path, classes) -> None:
    SparseEncoder, Transformer, Pooling, Normalize, SparseAutoEncoder = classes
    cfg, head = model.backbone_config, model.head.cpu()
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
        similarity_fn_name=SIMILARITY,
        device="cpu",
    )
    encoder.save(str(folder))
