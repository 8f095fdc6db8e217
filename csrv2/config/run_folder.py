"""Where `csrv2 train --config X [overrides]` writes when no output_dir is given: a folder per command, stable on rerun.

    run_folder("configs/quickstart.yaml", [])                            runs/quickstart (the YAML's output_dir)
    run_folder("configs/quickstart.yaml", ["head.k=4", "train.lr=1e-4"]) runs/quickstart-head.k=4-train.lr=1e-4
    run_folder("my_task.yaml", [])                                        runs/my_task (no output_dir in the YAML)
    run_folder("configs/quickstart.yaml", ["output_dir=runs/k4"])        runs/k4 (an explicit output_dir wins)

The base is the YAML's output_dir, else runs/<the YAML's file name>, else Config's default (no YAML). Overrides that
change what is trained append `-key=value` each, sorted by key, as typed; an override that leaves the resolved value
as it was appends nothing, and neither do the keys that name the same run: output_dir, train.resume (continue the run
this command started) and eval.* (what is scored; `--eval-only` finds the run it scores). So a rerun of the same
command, with or without train.resume=true, reaches the same folder, and two commands that train different heads never
share one. Characters a shell or a file system would trip on are dropped ([ ] { } quotes) or become `_`; a suffix over
80 characters is cut and ends with a hash of the whole.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

from csrv2.config import strict
from csrv2.config.run_config import Config

SAME_RUN = ("output_dir", "train.resume", "eval")  # keys (and sections) that address the same run folder
MAX_SUFFIX = 80


def _key(override: str) -> str:
    return override.split("=", 1)[0].strip()


def _same_run(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in SAME_RUN)


def _readable(part: str) -> str:
    part = re.sub(r"[\[\]{}'\"]", "", part)
    part = re.sub(r"\s*,\s*", ",", part.strip())
    return re.sub(r"[^A-Za-z0-9._=+,@-]+", "_", part)


def run_folder(path: str | Path | None, overrides: Sequence[str] = ()) -> str:
    """The output_dir of `csrv2 train --config path overrides` (module docstring)."""
    overrides = list(overrides)
    explicit = [o for o in overrides if _key(o) == "output_dir"]
    full = Config.from_yaml(path, overrides)
    if explicit:
        return full.output_dir
    raw = strict.read_yaml(path) if path is not None else {}
    base = Config.from_yaml(path)
    folder = base.output_dir if "output_dir" in raw or path is None else f"runs/{Path(path).stem}"
    before, after = strict.flatten(base.to_dict()), strict.flatten(full.to_dict())
    last = {_key(o): o for o in overrides}  # a key given twice: the last one counts, as in the config
    changed = [
        o
        for key, o in sorted(last.items())
        if not _same_run(key)
        and any(
            before.get(k, None) != after.get(k, None)
            for k in set(before) | set(after)
            if k == key or k.startswith(key + ".")
        )
    ]
    if not changed:
        return folder
    suffix = "-".join(_readable(o) for o in changed)
    if len(suffix) > MAX_SUFFIX:
        digest = hashlib.sha256("\n".join(changed).encode()).hexdigest()[:8]
        suffix = f"{suffix[: MAX_SUFFIX - 9].rstrip('-_.')}-{digest}"
    return f"{folder.rstrip('/')}-{suffix}"
