"""backbone.runtime: openvino and openvino-bf16: the model's ONNX export (csrv2.backbone.onnx_runtime, cached by its
weights hash and written atomically) read and compiled by OpenVINO for the CPU.

    encoder = OpenVinoEncoder(model, ["input_ids", "token_type_ids", "attention_mask"], threads=1, precision="f32")
    hidden = encoder(batch)   # {name: (B, T) int64 tensor} → last_hidden_state, torch float32 (B, T, d)

OpenVINO picks its own inference precision per CPU: bf16 on CPUs with AMX or AVX-512 BF16 (this one has both), so
its default is not exact. `openvino` sets INFERENCE_PRECISION_HINT f32 (torch's embeddings within 1e-5 per
coordinate); `openvino-bf16` asks for bf16 (matrix products on AMX tiles: several times faster where the CPU has
them, same as f32 where it has not; not exact, its accuracy cost is on the text table in docs/benchmarks.md). The
graph is compiled at load (~1 s); nothing but the ONNX export is cached.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from csrv2.backbone import onnx_runtime


class OpenVinoEncoder:
    """The ONNX export compiled by OpenVINO on the CPU: batch {name: (B, T) int64} → float32 (B, T, d)."""

    def __init__(self, model: torch.nn.Module, input_names: Sequence[str], threads: int = 0, precision: str = "f32"):
        import openvino

        if precision not in ("f32", "bf16"):
            raise ValueError(f"precision={precision!r} is not valid; choose f32 or bf16")
        self.input_names = list(input_names)
        self.path = onnx_runtime.export_path(model, self.input_names)
        if not self.path.is_file():  # present only when complete (atomic rename)
            onnx_runtime.export(model, self.input_names, self.path)
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads > 0:
            config["INFERENCE_NUM_THREADS"] = threads
        core = openvino.Core()
        self.compiled = core.compile_model(core.read_model(str(self.path)), "CPU", config)
        self.precision = self.compiled.get_property(
            "INFERENCE_PRECISION_HINT"
        ).get_type_name()  # what the CPU plugin runs

    def __call__(self, batch) -> torch.Tensor:
        feeds = {name: batch[name].numpy() for name in self.input_names}
        return torch.from_numpy(np.asarray(self.compiled(feeds)["last_hidden_state"]))
