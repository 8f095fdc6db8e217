"""sentence-transformers' SparseAutoEncoder module on disk ↔ a SparseHead's spec and tensors, both ways.

Plain dicts and tensors, no sentence_transformers import: `SparseHead.from_sentence_transformers` reads ST folders
with it, and `csrv2.export` writes them. The map (checked against sentence-transformers 6.2's source):

    csrv2 SparseHead                      ST SparseAutoEncoder (sparse_encoder.modules)
    weight (h, d)                         encoder.weight (h, d) = decoder.linear.weight (tied; ST saves the latter)
    b_pre (d,), b_lat (h,)                pre_bias (d,), latent_bias (h,)
    steps_since_fired (h,)                stats_last_nonzero − 1, ≥ 0 (ST zeroes a firing latent *before* adding 1)
    d_in, hidden, k                       input_dim, hidden_dim, k
    k_aux                                 k_aux (exported ≤ hidden: ST's AuxK takes a top-k_aux over all h latents)
    dead_steps                            dead_threshold − 1 (ST: dead ⇔ stats > threshold; csrv2: steps > dead_steps)
    (none)                                normalize=true: LayerNorm of the input, undone on the reconstruction

Both compute ReLU(TopK_k(W (x − b_pre) + b_lat)), so the codes agree on the same input. What csrv2 cannot express is
refused by name: normalize=true, config keys or tensors this map does not know (a later ST version's activation or
option), untied encoder/decoder weights, a model whose SparseAutoEncoder is followed by further modules.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from csrv2.files import recover_dir, subfolder_inside

ST_CONFIG = "config.json"  # a module folder's config (ST's Module.save_config)
ST_WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # ST's save_torch_weights, safe first
ST_KEYS = ("input_dim", "hidden_dim", "k", "k_aux", "normalize", "dead_threshold")
ST_TYPE = "SparseAutoEncoder"  # last part of its modules.json type (the module path moved between versions)


def find_module(path: str | Path) -> Path:
    """The SparseAutoEncoder module folder of a SparseEncoder folder (through modules.json), or `path` itself when it
    is a module folder. Refuses a model without one, with several, or with modules after it (they change the codes)."""
    path = Path(path)
    recover_dir(path)  # an export killed between its two renames left the previous one beside it
    listing = path / "modules.json"
    if listing.is_file():
        try:
            modules = json.loads(listing.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{listing}: not valid JSON ({err})") from None
        if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
            raise ValueError(f"{listing}: expected a list of {{type, path}} objects")
        kinds = [str(m.get("type", "?")).rsplit(".", 1)[-1] for m in modules]
        found = [i for i, kind in enumerate(kinds) if kind == ST_TYPE]
        if len(found) != 1:
            raise ValueError(
                f"{listing}: csrv2 imports a model with exactly one {ST_TYPE} module; its modules are {kinds}"
            )
        if found[0] != len(modules) - 1:
            raise ValueError(
                f"{listing}: modules after the {ST_TYPE} ({kinds[found[0] + 1 :]}) change its codes; a SparseHead "
                "cannot express them"
            )
        return subfolder_inside(path, modules[found[0]].get("path", ""), str(listing))
    config = path / ST_CONFIG
    if config.is_file() and {"input_dim", "hidden_dim"} <= set(_read_json(config)):
        return path
    raise FileNotFoundError(
        f"{path}: neither a SparseEncoder folder (modules.json) nor a {ST_TYPE} module folder ({ST_CONFIG} with "
        "input_dim and hidden_dim)"
    )


def read_module(folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """A module folder → (its config dict, its tensors on the CPU)."""
    config = _read_json(folder / ST_CONFIG)
    for name in ST_WEIGHTS:
        if (folder / name).is_file():
            if name.endswith(".safetensors"):
                return config, load_file(str(folder / name))
            return config, torch.load(folder / name, map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{folder}: no {' or '.join(ST_WEIGHTS)}")


def to_csrv2(config: dict, tensors: dict[str, torch.Tensor], where: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """ST config and tensors → (SparseHead keyword arguments, SparseHead state dict). `where` names the source."""
    unknown = sorted(set(config) - set(ST_KEYS))
    if unknown:
        raise ValueError(f"{where}: config keys {unknown} have no SparseHead equivalent (known: {list(ST_KEYS)})")
    if config.get("normalize", False):
        raise ValueError(
            f"{where}: normalize=true (ST layer-normalises each input before encoding); a SparseHead encodes the "
            "embedding as it comes and has no such step"
        )
    threshold = config.get("dead_threshold", 30)
    if not isinstance(threshold, int) or threshold < 1:
        raise ValueError(f"{where}: dead_threshold={threshold!r}; csrv2 needs an int ≥ 1 (dead_steps = threshold − 1)")
    kwargs = {
        "d_in": config["input_dim"],
        "hidden": config.get("hidden_dim", 512),
        "k": config.get("k", 8),
        "k_aux": config.get("k_aux", 512),
        "dead_steps": threshold - 1,
    }
    names = {"pre_bias", "latent_bias", "stats_last_nonzero", "encoder.weight", "decoder.linear.weight"}
    extra = sorted(set(tensors) - names)
    if extra:
        raise ValueError(f"{where}: tensors {extra} have no SparseHead equivalent")
    weights = [tensors[n] for n in ("encoder.weight", "decoder.linear.weight") if n in tensors]
    if not weights:
        raise ValueError(f"{where}: no encoder.weight or decoder.linear.weight")
    if not all(torch.equal(w, weights[0]) for w in weights):
        raise ValueError(f"{where}: encoder.weight and decoder.linear.weight differ; a SparseHead's decoder is tied")
    for name in ("pre_bias", "latent_bias"):
        if name not in tensors:
            raise ValueError(f"{where}: tensor {name} missing")
    stats = tensors.get("stats_last_nonzero", torch.zeros(kwargs["hidden"], dtype=torch.long))
    state = {
        "weight": weights[0],
        "b_pre": tensors["pre_bias"],
        "b_lat": tensors["latent_bias"],
        "steps_since_fired": (stats.long() - 1).clamp_min(0),
    }
    return kwargs, state


def from_csrv2(spec: dict, state: dict[str, torch.Tensor]) -> tuple[dict, dict[str, torch.Tensor]]:
    """SparseHead spec ({d_in, hidden, k, k_aux, dead_steps}) and state dict → (ST config, ST tensors)."""
    config = {
        "input_dim": spec["d_in"],
        "hidden_dim": spec["hidden"],
        "k": spec["k"],
        "k_aux": min(spec["k_aux"], spec["hidden"]),
        "normalize": False,
        "dead_threshold": spec["dead_steps"] + 1,
    }
    weight = state["weight"].detach().cpu().contiguous()
    tensors = {
        "pre_bias": state["b_pre"].detach().cpu().contiguous(),
        "latent_bias": state["b_lat"].detach().cpu().contiguous(),
        "stats_last_nonzero": state["steps_since_fired"].detach().cpu().long() + 1,
        "encoder.weight": weight,
        "decoder.linear.weight": weight,
    }
    return config, tensors


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value
