"""backbone.runtime: ct2 and ct2-int8: the transformers encoder converted to CTranslate2 and run by its Encoder on the
CPU (BERT, DistilBERT, RoBERTa, XLM-RoBERTa, CamemBERT: the encoders ctranslate2's TransformersConverter knows).

    encoder = Ct2Encoder(model, tokenizer, ["input_ids", "token_type_ids", "attention_mask"], threads=1)
    hidden = encoder(batch)   # {name: (B, T) int64 tensor} → last_hidden_state, torch float32 (B, T, d)

The conversion reads the loaded model itself (not its files again), so a finetuned copy converts as it is. The
converted folder (float32 weights) sits in the folder of the model's ONNX export, keyed by the same weights hash
(csrv2.backbone.onnx_runtime.export_path), as ct2-<hash of the ctranslate2 version>/, written under a temporary name
and renamed. ct2 runs it in float32 (torch's embeddings within 1e-5 per coordinate); ct2-int8 quantises its weights
to int8 when loading it and its activations per batch (not exact: its accuracy cost is on the text table in
docs/benchmarks.md). CTranslate2 takes one length per row (right padding only: csrv2.backbone.runtimes checks).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from csrv2.backbone import onnx_runtime
from csrv2.files import atomic_write_dir


def converted_path(model: torch.nn.Module, input_names: Sequence[str]) -> Path:
    """ct2-<hash of the ctranslate2 version> in the folder of the model's ONNX export (same weights key)."""
    key = {"ctranslate2": importlib.metadata.version("ctranslate2"), "quantization": None}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return onnx_runtime.export_path(model, input_names).parent / f"ct2-{digest}"


def convert(model: torch.nn.Module, tokenizer, folder: Path) -> Path:
    """Convert the loaded `model` (and `tokenizer`'s vocabulary) to a CTranslate2 folder, written atomically."""
    from ctranslate2.converters import TransformersConverter

    class FromLoaded(TransformersConverter):  # the converter loads from a path: hand it the loaded objects instead
        def load_model(self, model_class, model_name_or_path, **kwargs):
            return model

        def load_tokenizer(self, tokenizer_class, model_name_or_path, **kwargs):
            return tokenizer

    config = model.config
    if config.model_type == "bert" and not hasattr(config, "position_embedding_type"):
        config.position_embedding_type = (
            "absolute"  # transformers 5 dropped the option (BERT is absolute only); ct2 reads it
        )
    with tempfile.TemporaryDirectory() as config_dir:
        config.save_pretrained(config_dir)  # the converter picks its loader from the config's class
        converter = FromLoaded(config_dir)
        try:
            # only a CTranslate2 conversion replaces one (model.bin marks those written before output markers)
            return atomic_write_dir(
                folder,
                lambda tmp: converter.convert(str(tmp), force=True),
                kind="CTranslate2 model",
                legacy=lambda f: (f / "model.bin").is_file(),
            )
        except ValueError as err:
            if "No conversion is registered" not in str(err):
                raise
            raise ValueError(
                f"backbone.runtime=ct2: ctranslate2 has no converter for {type(model.config).__name__}; use "
                "backbone.runtime: onnx or openvino"
            ) from err


class Ct2Encoder:
    """The CTranslate2 Encoder on the CPU: batch {name: (B, T) int64, right-padded} → float32 (B, T, d); int8: weights
    and activations quantised, not exact."""

    def __init__(self, model, tokenizer, input_names: Sequence[str], threads: int = 0, int8: bool = False):
        import ctranslate2

        self.input_names = list(input_names)
        self.path = converted_path(model, self.input_names)
        if not (self.path / "model.bin").is_file():  # the folder exists only when complete (atomic rename)
            convert(model, tokenizer, self.path)
        self.encoder = ctranslate2.Encoder(
            str(self.path), device="cpu", compute_type="int8" if int8 else "float32", intra_threads=max(threads, 0)
        )

    def __call__(self, batch) -> torch.Tensor:
        import ctranslate2

        ids = np.ascontiguousarray(batch["input_ids"].numpy(), dtype=np.int32)
        lengths = np.ascontiguousarray(batch["attention_mask"].sum(1).numpy(), dtype=np.int32)
        kwargs = {}
        if "token_type_ids" in self.input_names and "token_type_ids" in batch:
            kwargs["token_type_ids"] = batch["token_type_ids"].tolist()
        out = self.encoder.forward_batch(
            ctranslate2.StorageView.from_array(ids), ctranslate2.StorageView.from_array(lengths), **kwargs
        )
        return torch.from_numpy(np.array(out.last_hidden_state))
