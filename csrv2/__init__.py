"""csrv2: ultra-sparse embeddings with CSR / CSRv2 sparse heads."""

from csrv2.codes import SparseCodes
from csrv2.config import Config, ConfigError
from csrv2.dense_index import DenseIndex
from csrv2.head import HeadOutput, SparseHead
from csrv2.index import SparseIndex
from csrv2.losses import info_nce, supcon_loss
from csrv2.model import SparseModel, load, push_to_hub
from csrv2.schedule import KAnnealing

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
