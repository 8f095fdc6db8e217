"""ONNX Runtime for text backbones (backbone.runtime: onnx): the transformers encoder exported once to ONNX, cached
under `$CSRV2_HOME/onnx/`, and run by onnxruntime on the CPU.

    encoder = OnnxEncoder(model, ["input_ids", "attention_mask", "token_type_ids"], threads=0)
    hidden = encoder(batch)   # the tokenizer's {name: (B, T) int64 tensor} → last_hidden_state, torch float32 (B, T, d)

The export is the TorchScript exporter (`torch.onnx.export(dynamo=False)`): it works offline with torch 2.13 and a
transformers 5 model as loaded (the dynamo exporter needs onnxscript); batch and sequence axes are dynamic. Its file
lives in a folder keyed by a hash of the model's weights (every tensor of its state dict, so a changed model or a
finetuned copy exports again) with the model class, the torch / onnx / onnxruntime versions and the opset. It is
written under a temporary name and renamed, so an interrupted export never leaves a file that looks complete, and
its sha256 is then recorded beside it (`model.onnx.sha256`, csrv2.files.record_digest). Every open checks it: a
damaged export (which ran and gave garbage embeddings, cosine ≈ 0 to torch, that the embedding cache then stored
with a valid checksum), or one without its digest, is named on stderr and exported again.

backbone.runtime: onnx-int8 runs that export quantised once by onnxruntime's dynamic quantisation (`quantize_dynamic`
with INT8_SETTINGS: the weights of every weight MatMul int8 per output channel, activations quantised per batch at
run time; attention's activation-by-activation MatMuls, embeddings and LayerNorms stay float32). The int8 file sits
beside the fp32 one, named by a hash of those settings, written atomically and checked like it (quantised from a
verified fp32 export). It is faster and not exact:
cosine to torch's embedding 0.992–0.994 on average, lowest 0.965, over 14,000 texts of four tasks, whose scores
moved by at most 0.4 points (docs/benchmarks.md, "Embedding speed").
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from csrv2 import extras, paths
from csrv2.files import atomic_write, digest_problem, record_digest

OPSET = 17  # ONNX opset of the export: LayerNormalization is one op from 17 on
# quantize_dynamic's options for runtime onnx-int8 (part of the int8 file's name). Measured on 300 R8 texts, one
# thread: per_channel=False gave cosine to torch ≥ 0.93 only (≥ 0.986 with it); reduce_range (7-bit weights, for
# CPUs without VNNI) ≥ 0.72; QUInt8 weights ran slower than fp32; excluding the FFN output MatMuls (≥ 0.995) was
# ~10 % slower; quantising the embedding Gathers too gave no speed.
INT8_SETTINGS = {"op_types_to_quantize": ["MatMul"], "per_channel": True, "reduce_range": False, "weight_type": "QInt8"}


def import_onnxruntime():
    """The onnxruntime module, or a MissingExtra (an ImportError) that names the extra to install."""
    return extras.require("onnxruntime", "backbone.runtime=onnx (and onnx-int8)")


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 of every tensor of the model's state dict (name, dtype, shape, bytes): ~0.1 s for MiniLM's 90 MB."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(flat.view(torch.uint8).numpy())  # raw bytes of any dtype (numpy has no bfloat16)
    return h.hexdigest()


def export_path(model: torch.nn.Module, input_names: Sequence[str]) -> Path:
    """$CSRV2_HOME/onnx/<model class>-<hash of weights, inputs and toolchain>/model.onnx."""
    key = {
        "weights": weights_digest(model),
        "class": type(model).__name__,
        "inputs": list(input_names),
        "opset": OPSET,
        "versions": {p: _version(p) for p in ("torch", "transformers", "onnx", "onnxruntime")},
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return paths.home() / "onnx" / f"{type(model).__name__}-{digest}" / "model.onnx"


class _LastHiddenState(torch.nn.Module):
    """The model with positional inputs (what the exporter traces) and one output: last_hidden_state (B, T, d)."""

    def __init__(self, model: torch.nn.Module, input_names: Sequence[str]):
        super().__init__()
        self.model, self.input_names = model, list(input_names)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.input_names, inputs))).last_hidden_state


def example_inputs(input_names: Sequence[str]) -> tuple[torch.Tensor, ...]:
    """A traced batch (2, 8): the second row half padding, so the graph keeps the masking of a padded batch."""
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 4:] = 0
    values = {"input_ids": torch.full((2, 8), 100) * mask, "attention_mask": mask}
    return tuple(values.get(name, torch.zeros(2, 8, dtype=torch.long)) for name in input_names)


def export(model: torch.nn.Module, input_names: Sequence[str], path: Path) -> Path:
    """Export `model` (on the CPU, eval mode) to `path` atomically; the exporter's warnings are not shown (legacy
    exporter notice, tracer notes on shape arithmetic that the dynamic axes make moot)."""
    axes = {name: {0: "batch", 1: "sequence"} for name in [*input_names, "last_hidden_state"]}

    # the exporter leaves the module it is given in that module's own mode, recursively: an eval-mode wrapper keeps
    # the model in eval mode (a fresh wrapper is in training mode and would switch the model's dropout on)
    wrapper, was_training = _LastHiddenState(model, input_names).eval(), model.training

    def write(tmp: Path) -> None:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                example_inputs(input_names),
                str(tmp),
                dynamo=False,
                opset_version=OPSET,
                input_names=list(input_names),
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
            )

    try:
        atomic_write(path, write)
        record_digest(path)
        return path
    finally:
        model.train(was_training)


def int8_path(fp32: Path) -> Path:
    """The quantised file beside the fp32 export: model-int8-<hash of INT8_SETTINGS>.onnx (same folder, same key)."""
    digest = hashlib.sha256(json.dumps(INT8_SETTINGS, sort_keys=True).encode()).hexdigest()[:12]
    return fp32.parent / f"model-int8-{digest}.onnx"


def quantize(fp32: Path, path: Path) -> Path:
    """quantize_dynamic(fp32) with INT8_SETTINGS, written to `path` atomically; its advice to pre-process the model
    first (a root-logger warning; shape inference that dynamic MatMul quantisation does not need) is not shown."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    settings = {**INT8_SETTINGS, "weight_type": QuantType[INT8_SETTINGS["weight_type"]]}
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        atomic_write(path, lambda tmp: quantize_dynamic(fp32, tmp, **settings))
        record_digest(path)
        return path
    finally:
        root.setLevel(level)


def needs_writing(path: Path) -> bool:
    """Whether a cached export must be written (again): absent, or not matching the digest recorded beside it (a
    damaged file is named on stderr)."""
    if not path.is_file():
        return True
    problem = digest_problem(path)
    if problem:
        print(f"onnx cache: {path} {problem}; writing it again", file=sys.stderr)
    return bool(problem)


class OnnxEncoder:
    """A transformers encoder run by onnxruntime on the CPU: batch {name: (B, T) int64} → float32 (B, T, d); int8:
    the export dynamically quantised (INT8_SETTINGS), not exact."""

    def __init__(self, model: torch.nn.Module, input_names: Sequence[str], threads: int = 0, int8: bool = False):
        ort = import_onnxruntime()
        self.input_names = list(input_names)
        self.path = export_path(model, self.input_names)
        if needs_writing(self.path):  # present only when complete (atomic rename), then checked against its digest
            export(model, self.input_names, self.path)
        if int8:
            fp32, self.path = self.path, int8_path(self.path)
            if needs_writing(self.path):
                quantize(fp32, self.path)
        options = ort.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    def __call__(self, batch) -> torch.Tensor:
        feeds = {name: batch[name].numpy() for name in self.input_names}
        return torch.from_numpy(self.session.run(["last_hidden_state"], feeds)[0])
