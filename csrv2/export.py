"""A trained run as a folder that sentence-transformers and csrv2 both open (the way back:
SparseHead.from_sentence_transformers).

    to_sentence_transformers("runs/quickstart", "runs/quickstart-st")     # = csrv2.load("runs/quickstart").save(...)
    SparseEncoder("runs/quickstart-st").encode(texts, max_active_dims=k)   # = csrv2.load("runs/quickstart").encode(
                                                                           #   texts, k), as dense (N, h) vectors
    csrv2.load("runs/quickstart-st")                                       # the same model, in csrv2

The folder (csrv2.model_folder) holds Transformer → Pooling → Normalize (when backbone.normalize) → SparseAutoEncoder,
written by sentence-transformers itself, with similarity_fn_name "cosine" (csrv2's scoring); csrv2's head, backbone
record and scores beside it; and the run's model card (hub metadata, usage, scores) as README.md. The head's tensors go
through csrv2.head.st_format's key map; ST's SparseAutoEncoder option normalize (a LayerNorm of the input) has no
csrv2 equivalent and is written false. The backbone's prompts become the model's "query" and "document" prompts,
"document" the default when it is set.
"""

from __future__ import annotations

from pathlib import Path

from csrv2.files import check_replaceable
from csrv2.model import load
from csrv2.model_folder import KIND, LAYOUT, POOLING, is_previous_export, st_classes

__all__ = ["KIND", "LAYOUT", "POOLING", "is_previous_export", "st_classes", "to_sentence_transformers"]


def to_sentence_transformers(run_dir: str | Path, out_dir: str | Path, name: str | None = None) -> Path:
    """Write the run's head and backbone (csrv2.load's: a finetuned run's own) as a model folder; returns it. The
    folder appears complete or not at all; an existing out_dir is replaced only when it is a previous export (its
    csrv2 marker, or the module layout written here), anything else is refused (csrv2.files.RefusedFolder) before any
    work. out_dir must lie outside run_dir: replacing it would delete the run. name: what the model card's snippets
    load (a hub id; default out_dir as given)."""
    run, out = Path(run_dir).resolve(), Path(out_dir).resolve()
    if out == run or run in out.parents or out in run.parents:
        raise ValueError(f"out_dir {out_dir} overlaps the run folder {run_dir}: export to a folder outside the run")
    check_replaceable(out_dir, KIND, legacy=is_previous_export)  # before loading anything
    return load(run_dir, device="cpu").save(out_dir, name)
