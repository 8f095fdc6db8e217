"""backbone.runtime: onnx-fused: the ONNX export rewritten by onnxruntime's transformer optimizer for BERT-like
encoders (what Optimum's ORTOptimizer and sentence-transformers' ONNX backend do), run by onnxruntime on the CPU.

    encoder = FusedOnnxEncoder(model, ["input_ids", "token_type_ids", "attention_mask"], threads=1)
    hidden = encoder(batch)   # {name: (B, T) int64 tensor} → last_hidden_state, torch float32 (B, T, d)

The optimizer matches attention only in the graph of transformers' eager attention (the SDPA graph that the model
runs by default keeps its MatMul + Softmax), so the model is exported once with attn_implementation="eager" (same
weights, same numbers within float rounding) and `optimize_model(model_type="bert")` fuses, for all-MiniLM-L6-v2,
the embeddings + LayerNorm into one EmbedLayerNormalization, each layer's Q/K/V + softmax into one Attention, the
residual adds into 12 SkipLayerNormalization and the FFN's bias + GELU into 6 BiasGelu. Its Attention reads the
mask as one length per row: right padding only (csrv2.backbone.runtimes checks the tokenizer).

The fused file sits in the export's folder (keyed by the weights hash, the toolchain and the opset:
csrv2.backbone.onnx_runtime.export_path) as model-fused-<hash of FUSION>.onnx, written under a temporary name and
renamed. It equals torch within 1e-5 per coordinate (tests/backbone/test_runtimes.py); on this 2-core CPU it was
not faster than the plain export (docs/benchmarks.md, "Embedding speed on the CPU").
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from csrv2.backbone import onnx_runtime
from csrv2.files import atomic_write

# Hugging Face model types whose graph onnxruntime's "bert" optimizer knows (the families Optimum optimises as bert)
BERT_LIKE = {"bert", "roberta", "xlm-roberta", "camembert", "distilbert", "electra", "mpnet"}
FUSION = {"model_type": "bert", "opt_level": 0, "attention": "eager"}  # part of the fused file's name


def fused_path(model: torch.nn.Module, input_names: Sequence[str]) -> Path:
    """model-fused-<hash of FUSION>.onnx in the folder of the model's plain export (same weights key)."""
    digest = hashlib.sha256(json.dumps(FUSION, sort_keys=True).encode()).hexdigest()[:12]
    return onnx_runtime.export_path(model, input_names).parent / f"model-fused-{digest}.onnx"


def fuse(model: torch.nn.Module, input_names: Sequence[str], path: Path) -> dict[str, int]:
    """Export `model` with eager attention to a temporary file, fuse it, write the result to `path` atomically;
    returns the fused operator counts. The model's attention implementation is restored after."""
    from onnxruntime.transformers.optimizer import optimize_model

    config = model.config
    if config.model_type not in BERT_LIKE:
        raise ValueError(
            f"backbone.runtime=onnx-fused fuses BERT-like encoders ({', '.join(sorted(BERT_LIKE))}); this model is "
            f"{config.model_type!r}: use backbone.runtime: onnx"
        )
    before = config._attn_implementation
    root = logging.getLogger()
    level = root.level
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "eager.onnx"
        try:
            model.set_attn_implementation(FUSION["attention"])
            onnx_runtime.export(model, input_names, plain)
        finally:
            model.set_attn_implementation(before)
        root.setLevel(logging.ERROR)  # the optimizer logs each fusion pass at warning level
        try:
            optimized = optimize_model(
                str(plain),
                model_type=FUSION["model_type"],
                num_heads=config.num_attention_heads,
                hidden_size=config.hidden_size,
                opt_level=FUSION["opt_level"],
            )
        finally:
            root.setLevel(level)
        atomic_write(path, lambda out: optimized.save_model_to_file(str(out)))
    return {op: n for op, n in optimized.get_fused_operator_statistics().items() if n}


class FusedOnnxEncoder:
    """The fused graph in an onnxruntime session: batch {name: (B, T) int64} → float32 (B, T, d)."""

    def __init__(self, model: torch.nn.Module, input_names: Sequence[str], threads: int = 0):
        ort = onnx_runtime.import_onnxruntime()
        self.input_names = list(input_names)
        self.path = fused_path(model, self.input_names)
        if not self.path.is_file():  # present only when complete (atomic rename)
            fuse(model, self.input_names, self.path)
        options = ort.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.feed_names = {i.name for i in self.session.get_inputs()}  # the optimizer drops inputs it does not use

    def __call__(self, batch) -> torch.Tensor:
        feeds = {name: batch[name].numpy() for name in self.input_names if name in self.feed_names}
        return torch.from_numpy(self.session.run(["last_hidden_state"], feeds)[0])
