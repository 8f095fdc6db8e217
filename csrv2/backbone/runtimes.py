"""The text backbone's CPU runtimes (backbone.runtime): one table of what each is, what it needs, and how it is built.

    forward = build("openvino", model, tokenizer, ["input_ids", "attention_mask"], threads=1)
    hidden = forward(batch)   # the tokenizer's {name: (B, T) int64 tensor} → last_hidden_state float32 (B, T, d)

Every runtime but torch runs on the CPU, from a file converted once from the loaded model and cached under
`$CSRV2_HOME/onnx/` in a folder keyed by a hash of the model's weights (csrv2.backbone.onnx_runtime.export_path),
written atomically. Exact runtimes give torch's embeddings within 1e-5 per coordinate (tests/backbone); the others
trade accuracy for speed, measured on the text table (docs/benchmarks.md, "Embedding speed on the CPU").
TextEncoder pools, normalises and batches the same way after any of them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from csrv2.backbone import ct2_runtime, onnx_runtime, openvino_runtime, ort_fused


@dataclass(frozen=True)
class Runtime:
    module: str  # the package it imports
    extra: str  # pip install 'csrv2[<extra>]'
    exact: bool  # within 1e-5 of torch fp32 per coordinate
    what: str


RUNTIMES = {
    "torch": Runtime("torch", "", True, "the transformers model in torch (CPU or GPU)"),
    "onnx": Runtime("onnxruntime", "onnx", True, "TorchScript ONNX export, onnxruntime's default graph optimisations"),
    "onnx-fused": Runtime(
        "onnxruntime",
        "onnx",
        True,
        "the export rewritten by onnxruntime's transformer optimizer: fused attention, LayerNorm, GELU",
    ),
    "onnx-int8": Runtime("onnxruntime", "onnx", False, "the onnx export with int8 MatMul weights (dynamic)"),
    "openvino": Runtime("openvino", "openvino", True, "the onnx export compiled by OpenVINO, f32 precision"),
    "openvino-bf16": Runtime(
        "openvino", "openvino", False, "the onnx export compiled by OpenVINO, bf16 inference precision"
    ),
    "ct2": Runtime("ctranslate2", "ct2", True, "the model converted to CTranslate2, float32"),
    "ct2-int8": Runtime("ctranslate2", "ct2", False, "the CTranslate2 model with int8 weights and activations"),
}


def require(runtime: str) -> None:
    """Import the runtime's package, or raise ImportError in one line naming the extra to install."""
    spec = RUNTIMES.get(runtime)
    if spec is None:
        raise ValueError(f"backbone.runtime={runtime!r} is not valid; choose {', '.join(RUNTIMES)}")
    try:
        importlib.import_module(spec.module)
    except ImportError as err:
        raise ImportError(f"backbone.runtime={runtime} needs {spec.module}: pip install 'csrv2[{spec.extra}]'") from err


def build(runtime: str, model, tokenizer, input_names: Sequence[str], threads: int = 0) -> Callable:
    """The forward of `model` (a transformers encoder on the CPU, eval mode) in `runtime` (not torch)."""
    require(runtime)
    if runtime in ("onnx", "onnx-int8"):
        return onnx_runtime.OnnxEncoder(model, input_names, threads=threads, int8=runtime == "onnx-int8")
    if runtime in ("onnx-fused", "ct2", "ct2-int8") and tokenizer.padding_side != "right":
        raise ValueError(
            f"backbone.runtime={runtime} reads the attention mask as one length per row (right padding), but the "
            f"tokenizer pads on the {tokenizer.padding_side}; use backbone.runtime: torch, onnx or openvino"
        )
    if runtime == "onnx-fused":
        return ort_fused.FusedOnnxEncoder(model, input_names, threads=threads)
    if runtime in ("openvino", "openvino-bf16"):
        precision = "bf16" if runtime == "openvino-bf16" else "f32"
        return openvino_runtime.OpenVinoEncoder(model, input_names, threads=threads, precision=precision)
    return ct2_runtime.Ct2Encoder(model, tokenizer, input_names, threads=threads, int8=runtime == "ct2-int8")
