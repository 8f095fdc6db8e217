"""What a sentence-transformers model folder says about its own pooling and normalisation (read by csrv2.backbone.encoders).

A sentence-transformers (ST) folder lists its modules in `modules.json`: a Transformer (the model files, at the root or
in a subfolder), then a Pooling module (`<path>/config.json`), then optionally a Normalize module. Pooling configs
come in two spellings: ST ≥ 6 writes `"pooling_mode": "cls"`, earlier versions one boolean per mode
(`"pooling_mode_cls_token": true`, `pooling_mode_mean_tokens`, `pooling_mode_max_tokens`, `pooling_mode_lasttoken`,
`pooling_mode_mean_sqrt_len_tokens`, `pooling_mode_weightedmean_tokens`).

    st = read_st_modules(lambda rel: folder / rel if (folder / rel).is_file() else None, str(folder))
    st.pooling, st.normalize, st.subfolder, st.include_prompt     # or st is None: not an ST folder

csrv2 pools by cls, mean, last token or max; anything else in the folder (another pooling mode, several modes at
once, a Dense or other module) is refused with a ValueError naming the file and the module, never approximated. A
SparseEncoder folder whose dense part is Transformer → Pooling (→ Normalize), followed by one SparseAutoEncoder (a
csrv2 model folder, csrv2.model_folder), reads as that dense part: the embeddings the autoencoder encodes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from csrv2.files import subfolder_inside

# ST pooling mode → csrv2 backbone.pooling
ST_POOLING = {"cls": "cls", "mean": "mean", "lasttoken": "last", "max": "max"}
# the boolean keys of ST < 6 pooling configs → the ST mode name
LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_lasttoken": "lasttoken",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
}
SUPPORTED_MODULES = ("Transformer", "Pooling", "Normalize")
HEAD_MODULE = "SparseAutoEncoder"  # may follow the dense part: the head of a csrv2 model folder


@dataclass(frozen=True)
class STModules:
    """The parts of an ST folder that decide its embeddings, in csrv2's terms."""

    pooling: str  # cls, mean, last or max
    normalize: bool  # a Normalize module follows the pooling
    subfolder: str  # where the Transformer's files are ("" = the folder itself)
    include_prompt: bool  # False: ST leaves prompt tokens out of the pooling
    source: str  # the pooling config file, for messages


def _json(read: Callable[[str], Path | None], rel: str, where: str):
    path = read(rel)
    if path is None:
        raise ValueError(f"{where}/{rel} is missing: modules.json lists it")
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{where}/{rel}: not valid JSON ({err})") from None


def pooling_mode(config: dict, source: str) -> str:
    """The csrv2 pooling of an ST Pooling config (either spelling); unsupported or several modes → ValueError."""
    if "pooling_mode" in config:
        raw = config["pooling_mode"]
        modes = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, list | tuple) else [repr(raw)]
    else:
        modes = [mode for key, mode in LEGACY_POOLING_KEYS.items() if config.get(key)]
    if len(modes) != 1:
        raise ValueError(
            f"{source}: the model pools by {' + '.join(modes) if modes else 'no mode at all'}; csrv2 pools by one of "
            f"{', '.join(ST_POOLING)}"
        )
    if modes[0] not in ST_POOLING:
        raise ValueError(
            f"{source}: pooling mode {modes[0]!r} is not supported; csrv2 pools by one of {', '.join(ST_POOLING)}"
        )
    return ST_POOLING[modes[0]]


def inside(rel, where: str) -> None:
    """Refuse a module path that is not relative or leaves the model folder ("..", an absolute path; for a local
    folder also a link out of it): the model or config there would be loaded in the folder's name."""
    if Path(where).is_dir():
        subfolder_inside(where, rel, f"{where}/modules.json")
        return
    pure = PurePosixPath(str(rel).replace("\\", "/"))
    if not isinstance(rel, str) or pure.is_absolute() or ".." in pure.parts:
        raise ValueError(f"{where}/modules.json: the module path {rel!r} leaves the model; it must lie inside it")


def read_st_modules(read: Callable[[str], Path | None], where: str) -> STModules | None:
    """The pooling and normalisation an ST folder declares; None when it has no modules.json (a plain model).

    read(relative path) → a local file, or None when the folder has no such file. where: the folder or hub id, for
    messages."""
    modules = _json(read, "modules.json", where) if read("modules.json") is not None else None
    if modules is None:
        return None
    if not isinstance(modules, list) or not all(isinstance(m, dict) and "type" in m for m in modules):
        raise ValueError(f"{where}/modules.json: expected a list of {{type, path}} objects")
    kinds = [str(m["type"]).rsplit(".", 1)[-1] for m in modules]
    if len(kinds) > 2 and kinds[-1] == HEAD_MODULE:  # a SparseEncoder: its dense part feeds the autoencoder
        modules, kinds = modules[:-1], kinds[:-1]
    unsupported = [f"{m['type']} ({m.get('path', '')})" for m, k in zip(modules, kinds) if k not in SUPPORTED_MODULES]
    if unsupported:
        raise ValueError(
            f"{where}/modules.json: module {unsupported[0]} is not supported; csrv2's text backbones read "
            f"{' → '.join(SUPPORTED_MODULES)} folders (use a model without it, or wrap the model yourself)"
        )
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise ValueError(
            f"{where}/modules.json: modules {' → '.join(kinds)}; csrv2 reads Transformer → Pooling (→ Normalize)"
        )
    for module in modules[:2]:  # the model files and the pooling config must lie inside the model
        inside(module.get("path") or "", where)
    pooling_rel = f"{modules[1].get('path') or '.'}/config.json".removeprefix("./")
    config = _json(read, pooling_rel, where)
    if not isinstance(config, dict):
        raise ValueError(f"{where}/{pooling_rel}: expected a JSON object")
    source = f"{where}/{pooling_rel}"
    return STModules(
        pooling=pooling_mode(config, source),
        normalize=len(kinds) == 3,
        subfolder=str(modules[0].get("path") or ""),
        include_prompt=bool(config.get("include_prompt", True)),
        source=source,
    )
