"""Checkpoints of a run folder: step_NNNNNN/ written under a temporary name, then renamed (csrv2.files).

state.json records the step, the sha256 of every other file, and its own (state_sha256, over its other keys): an
edited step would otherwise resume at the wrong step with weights of another.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_model
from torch import nn

from csrv2.files import MARKER, atomic_write_dir, output_kind, recover_dir, sha256_file

STEP_PREFIX = "step_"
FORMAT = "csrv2.checkpoint/2"  # state.json covers itself; before it (no "format" key), only the other files
KIND = "checkpoint"  # the kind csrv2.files records in the folder's marker


def state_digest(state: dict) -> str:
    """sha256 of state.json's keys other than state_sha256, serialised canonically."""
    body = {key: value for key, value in state.items() if key != "state_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


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
        digests = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}  # state.json is written last
        state = {"format": FORMAT, "step": step, "sha256": digests}
        state["state_sha256"] = state_digest(state)
        (tmp / "state.json").write_text(json.dumps(state, indent=1) + "\n")

    atomic_write_dir(final, write, KIND, legacy=lambda folder: (folder / "state.json").is_file())
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints (temporary folders excluded), oldest first; one a killed save left moved aside is put
    back first (csrv2.files.recover_dir)."""
    for aside in run_dir.glob(f".{STEP_PREFIX}*.replaced"):
        recover_dir(run_dir / aside.name[1 : -len(".replaced")])
    found = [p for p in run_dir.glob(f"{STEP_PREFIX}*") if p.is_dir() and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(STEP_PREFIX) :]))


def verify_checkpoint(path: Path) -> str:
    """ "" when state.json matches its own checksum and every file the checksum it records, else what is wrong,
    naming the file. Checkpoints written before state.json hashed itself (no "format"; no csrv2 marker) are checked
    by their file checksums; ones written before any checksum pass unchecked."""
    state_file = path / "state.json"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return f"{state_file} cannot be read ({err})"
    if not isinstance(state, dict) or not isinstance(state.get("sha256", {}), dict):
        return f"{state_file} is not a checkpoint state (a mapping with step and sha256)"
    step = state.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0 or path.name != checkpoint_name(step):
        return f"{state_file}: step {step!r} is not the step of its folder {path.name}"
    if state.get("format") == FORMAT or output_kind(path) is not None:
        if state.get("state_sha256") != state_digest(state):
            return f"{state_file} does not match the state_sha256 recorded in it (edited or corrupted)"
        unlisted = {p.name for p in path.iterdir()} - set(state["sha256"]) - {"state.json", MARKER}
        if unlisted:
            return f"{path / sorted(unlisted)[0]} is not among the files state.json records"
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
