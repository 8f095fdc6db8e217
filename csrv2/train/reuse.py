"""Reuse a finished run: the paper grid, the fold protocol and the benchmark train many heads and must not train one
twice. A folder holding a finished run of the same config (csrv2.runs.layout.is_finished) is loaded; anything else
there (a run that was interrupted, or one of another config) is replaced by a fresh training — unless the folder holds
files no run writes (csrv2.runs.layout.holds_only_a_run): that is refused, never removed."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from torch import nn

from csrv2.config.run_config import Config
from csrv2.data.prepare import TrainingData
from csrv2.files import RefusedFolder
from csrv2.head.baselines import MRLHead
from csrv2.head.sparse_head import SparseHead
from csrv2.runs.layout import holds_only_a_run, is_finished
from csrv2.train.trainer import Trainer


def load_or_train(config: Config, data: TrainingData) -> tuple[nn.Module, float]:
    """The head of config.output_dir: loaded when a finished run of this same config is there (0.0 s), else trained
    on `data` after removing any unfinished run there. Returns (head on the CPU in eval mode, training seconds)."""
    folder = Path(config.output_dir)
    cls = MRLHead if config.train.objective == "mrl" else SparseHead
    if is_finished(folder, config):
        return cls.from_pretrained(folder).eval(), 0.0
    if folder.exists():
        if not holds_only_a_run(folder):  # someone's own files: never removed to make room for a run
            raise RefusedFolder(
                f"{folder}: refusing to replace it with a run: it holds files no run writes; remove it yourself "
                "or choose another output folder"
            )
        shutil.rmtree(folder)  # a run this grid started and did not finish, or one of another config
    start = time.perf_counter()
    head = Trainer(config, data).fit()
    return head.cpu().eval(), time.perf_counter() - start
