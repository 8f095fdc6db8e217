"""Where a run came from: package versions, the csrv2 git commit, the command; kept in the run folder's run.json.

    package_versions()            {"torch": "2.13.0", "sentence-transformers": None, ...}  (None: not installed)
    git_state()                   {"commit": "7db6d1f…" | "unknown", "dirty": True | False | None}
    record_session(run_dir, cmd)  appends this process's record to <run_dir>/run.json (atomically)

run.json holds {"sessions": [...]}: one record per start of training in the folder (a resume adds one), so two runs
can be compared on the code and packages that produced them (`csrv2 compare`).
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from csrv2.files import atomic_write_json
from csrv2.runs.layout import RUN_RECORD

FROM_PYTHON = "trained from Python"  # the command of a run started by Trainer(...).fit() rather than `csrv2 train`
# What a run's numbers depend on: csrv2 itself, the tensor and model stack, and the evaluation (scikit-learn).
PACKAGES = ("csrv2", "torch", "numpy", "scipy", "scikit-learn", "transformers", "sentence-transformers", "safetensors")
GIT_TIMEOUT_S = 5.0
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # csrv2/, this file being csrv2/runs/provenance.py


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each package (None when absent)."""
    out = {}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _git(*args: str) -> str | None:
    """stdout of `git <args>` run in the csrv2 package folder; None when git is missing, fails or hangs."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=PACKAGE_DIR, capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state() -> dict:
    """The commit of the checkout csrv2 runs from, and whether tracked files differ from it (untracked files, such
    as run folders, are not counted). "unknown" / None when csrv2 is not imported from a git checkout of itself
    (an installed wheel inside some other repository's tree counts as not)."""
    top = _git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() / "csrv2" != PACKAGE_DIR:
        return {"commit": "unknown", "dirty": None}
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit or "unknown", "dirty": None if status is None else bool(status)}


def session_record(command: str | None) -> dict:
    """This process: when it started, the command (FROM_PYTHON when none), the code and the packages."""
    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command or FROM_PYTHON,
        "git": git_state(),
        "python": platform.python_version(),
        "packages": package_versions(),
    }


def read_run_record(run_dir: str | Path) -> dict:
    """<run_dir>/run.json, or {"sessions": []} when the run predates it; a damaged file is named."""
    path = Path(run_dir) / RUN_RECORD
    if not path.is_file():
        return {"sessions": []}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(record, dict) or not isinstance(record.get("sessions"), list):
        raise ValueError(f"{path}: expected an object with a list under 'sessions'")
    return record


def record_session(run_dir: str | Path, command: str | None) -> dict:
    """Append this process's session_record to <run_dir>/run.json (written atomically); returns the record."""
    record = read_run_record(run_dir)
    record["sessions"].append(session_record(command))
    atomic_write_json(Path(run_dir) / RUN_RECORD, record)
    return record
