"""Where csrv2 keeps things: the cache home and the shared data folder (one definition of each).

home()             $CSRV2_HOME, default ~/.cache/csrv2: fetched assets, the embedding cache, benchmark files
shared_data_dir()  $CSRV2_SHARED_DATA, default `shared/data` beside the repository checkout: the extra real
                   task sets (STS, pair classification, retrieval, reranking, clustering; docs/assets.md)
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The cache root: `$CSRV2_HOME`, default `~/.cache/csrv2` (an empty variable counts as unset)."""
    return Path(os.environ.get("CSRV2_HOME") or Path.home() / ".cache" / "csrv2").expanduser()


def shared_data_dir() -> Path:
    """`$CSRV2_SHARED_DATA`, else the folder `shared/data` next to the repository root (…/<repo>/../shared/data)."""
    if os.environ.get("CSRV2_SHARED_DATA"):
        return Path(os.environ["CSRV2_SHARED_DATA"]).expanduser()
    return Path(__file__).resolve().parents[2] / "shared" / "data"
