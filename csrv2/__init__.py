"""csrv2: ultra-sparse embeddings with CSR / CSRv2 sparse heads.

The public names below are imported on first use (PEP 562), so `import csrv2` and the `csrv2` command start without
loading torch; `from csrv2 import SparseHead` works as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what the lazy names are, for type checkers and readers
    from csrv2.config.run_config import Config, ConfigError
    from csrv2.head.codes import SparseCodes
    from csrv2.head.k_annealing import KAnnealing
    from csrv2.head.losses import info_nce, supcon_loss
    from csrv2.head.sparse_head import HeadOutput, SparseHead
    from csrv2.index.dense import DenseIndex
    from csrv2.index.sparse_index import SparseIndex
    from csrv2.model import SparseModel, load, push_to_hub

_PUBLIC = {
    "Config": "csrv2.config.run_config",
    "ConfigError": "csrv2.config.run_config",
    "DenseIndex": "csrv2.index.dense",
    "HeadOutput": "csrv2.head.sparse_head",
    "KAnnealing": "csrv2.head.k_annealing",
    "SparseCodes": "csrv2.head.codes",
    "SparseHead": "csrv2.head.sparse_head",
    "SparseIndex": "csrv2.index.sparse_index",
    "SparseModel": "csrv2.model",
    "info_nce": "csrv2.head.losses",
    "load": "csrv2.model",
    "push_to_hub": "csrv2.model",
    "supcon_loss": "csrv2.head.losses",
}
__all__ = [
    "Config",
    "ConfigError",
    "DenseIndex",
    "HeadOutput",
    "KAnnealing",
    "SparseCodes",
    "SparseHead",
    "SparseIndex",
    "SparseModel",
    "info_nce",
    "load",
    "push_to_hub",
    "supcon_loss",
]
__version__ = "0.1.0"
assert sorted(__all__) == sorted(_PUBLIC)


def __getattr__(name: str):
    """A public name from the module that defines it; any other attribute as a submodule (csrv2.export)."""
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
    else:
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'csrv2' has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
