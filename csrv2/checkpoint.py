"""Checkpoints of a run folder: step_NNNNNN/ written under a temporary name, then renamed (csrv2.files)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_model
from torch import nn

from csrv2.files import atomic_write_dir

STEP_PREFIX = "step_"


def checkpoint_name(step: int) -> str:
    return f"{STEP_PREFIX}{step:06d}"


def save_checkpoint(
    run_dir: Path, step: int, head: nn.Module, optimizer: torch.optim.Optimizer, keep: int, modules: dict | None = None
) -> Path:
    """Write step_NNNNNN/ (head weights + config, other trained modules, optimizer, step, RNG) atomically;
    keep the last `keep`."""
    final = run_dir / checkpoint_name(step)

    def write(tmp: Path) -> None:
        head.save_pretrained(tmp)
        for name, module in (modules or {}).items():
            save_model(module, str(tmp / f"{name}.module.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save({"torch": torch.get_rng_state()}, tmp / "rng.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step}) + "\n")

    atomic_write_dir(final, write)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints (temporary folders excluded), oldest first."""
    found = [p for p in run_dir.glob(f"{STEP_PREFIX}*") if p.is_dir() and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(STEP_PREFIX) :]))


def load_checkpoint(path: Path, head: nn.Module, optimizer: torch.optim.Optimizer, modules: dict | None = None) -> int:
    """Restore head, other trained modules, optimizer and RNG from a checkpoint folder; returns its step."""
    weights = next(p for p in path.glob("*.safetensors") if not p.name.endswith(".module.safetensors"))
    head.load_state_dict(load_file(str(weights)))
    for name, module in (modules or {}).items():
        load_model(module, str(path / f"{name}.module.safetensors"))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    torch.set_rng_state(torch.load(path / "rng.pt", weights_only=True)["torch"])
    return int(json.loads((path / "state.json").read_text())["step"])
