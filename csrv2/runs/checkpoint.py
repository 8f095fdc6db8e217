"""Checkpoints of a run folder: step_NNNNNN/ written under a temporary name, then renamed (csrv2.files)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_model
from torch import nn

from csrv2.files import atomic_write_dir, sha256_file

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
        digests = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}  # state.json is written last, unhashed
        (tmp / "state.json").write_text(json.dumps({"step": step, "sha256": digests}, indent=1) + "\n")

    atomic_write_dir(final, write)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints (temporary folders excluded), oldest first."""
    found = [p for p in run_dir.glob(f"{STEP_PREFIX}*") if p.is_dir() and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(STEP_PREFIX) :]))


def verify_checkpoint(path: Path) -> str:
    """ "" when every file matches the checksum its state.json recorded, else what is wrong, naming the file.
    Checkpoints written before checksums were recorded pass unchecked."""
    try:
        state = json.loads((path / "state.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        return f"{path / 'state.json'} cannot be read ({err})"
    for name, digest in state.get("sha256", {}).items():
        file = path / name
        if not file.is_file():
            return f"{file} is missing"
        if sha256_file(file) != digest:
            return f"{file} does not match its recorded sha256 (corrupted)"
    return ""


def latest_good_checkpoint(run_dir: Path, note=print) -> Path | None:
    """The newest checkpoint whose files match their checksums; each broken one passed over is named via `note`."""
    for path in reversed(list_checkpoints(run_dir)):
        problem = verify_checkpoint(path)
        if not problem:
            return path
        note(f"checkpoint {path.name} is broken: {problem}; trying the one before it")
    return None


def load_checkpoint(path: Path, head: nn.Module, optimizer: torch.optim.Optimizer, modules: dict | None = None) -> int:
    """Restore head, other trained modules, optimizer and RNG from a checkpoint folder; returns its step."""
    weights = next(p for p in path.glob("*.safetensors") if not p.name.endswith(".module.safetensors"))
    head.load_state_dict(load_file(str(weights)))
    for name, module in (modules or {}).items():
        load_model(module, str(path / f"{name}.module.safetensors"))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    torch.set_rng_state(torch.load(path / "rng.pt", weights_only=True)["torch"])
    return int(json.loads((path / "state.json").read_text())["step"])
