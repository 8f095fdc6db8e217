"""One interface over every engine the engines benchmark measures (csrv2.experiments.bench.engines).

Each adapter builds its index from SparseCodes (N, k) in __init__ and answers

    prepare(queries) -> whatever its search takes (built once, outside the timed calls)
    search(prepared, top, threads) -> (scores float32 (Q, top), doc ids int64 (Q, top)); -1 / -inf pad a short row
    index_bytes() -> bytes of the index in memory or on disk;  settings() -> the parameters it ran with

and says whether it is exact by design and whether it runs its own thread pool. The optional packages are imported
inside each adapter, so a missing engine costs nothing until it is measured.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from csrv2.head.codes import SparseCodes
from csrv2.index.milvus import MilvusSparse
from csrv2.index.qdrant import QdrantSparse
from csrv2.index.sparse_index import SparseIndex

if TYPE_CHECKING:  # the adapters read only EnginesConfig.pisa_scale; engines.py imports this module
    from csrv2.experiments.bench.engines import EnginesConfig

Result = tuple[np.ndarray, np.ndarray]


class SparseIndexEngine:
    name, exact, own_threads = "sparse_index", True, False

    def __init__(self, codes: SparseCodes, config: EnginesConfig, folder: Path):
        self.index = SparseIndex.build(codes)

    def prepare(self, queries: SparseCodes) -> SparseCodes:
        return queries

    def search(self, queries: SparseCodes, top: int, threads: int) -> Result:
        scores, ids = self.index.search(queries, top=top, threads=threads or None)
        return scores.numpy(), ids.numpy()

    def index_bytes(self) -> int:
        return self.index.memory_bytes()

    def settings(self) -> dict:
        return {}


def _seismic_strings(idx: np.ndarray) -> np.ndarray:
    import seismic

    return np.asarray([str(i) for i in idx], dtype=seismic.get_seismic_string())


class SeismicEngine:
    """Seismic's SeismicIndex built from a SeismicDataset of the codes (latent l is the component "l")."""

    name, exact, own_threads = "seismic", False, False
    BUILD = {"n_postings": 3500, "centroid_fraction": 0.1, "summary_energy": 0.4}
    SEARCH = {"query_cut": 20, "heap_factor": 0.7}

    def __init__(self, codes: SparseCodes, config: EnginesConfig, folder: Path, build=None, search=None):
        from seismic import SeismicDataset, SeismicIndex

        self.build, self.search_params = dict(build or self.BUILD), dict(search or self.SEARCH)
        idx, val = codes.indices.numpy(), codes.values.numpy().astype(np.float32)
        dataset = SeismicDataset()
        for row in range(len(idx)):
            keep = val[row] != 0
            dataset.add_document(str(row), _seismic_strings(idx[row][keep]), np.ascontiguousarray(val[row][keep]))
        with quiet():  # Seismic and PISA print their progress on the process' own stdout
            self.index = SeismicIndex.build_from_dataset(dataset, **self.build)
        self.folder = folder

    def prepare(self, queries: SparseCodes) -> tuple:
        idx, val = queries.indices.numpy(), queries.values.numpy().astype(np.float32)
        keep = [val[q] != 0 for q in range(len(idx))]
        comps = [_seismic_strings(idx[q][keep[q]]) for q in range(len(idx))]
        vals = [np.ascontiguousarray(val[q][keep[q]]) for q in range(len(idx))]
        return np.array([str(q) for q in range(len(idx))], dtype=_seismic_strings(np.zeros(1, int)).dtype), comps, vals

    def search(self, prepared: tuple, top: int, threads: int) -> Result:
        qids, comps, vals = prepared
        if len(comps) == 1:
            found = [self.index.search(qids[0], comps[0], vals[0], top, **self.search_params)]
        else:
            found = self.index.batch_search(qids, comps, vals, top, **self.search_params, num_threads=threads)
        return _rows(found, len(comps), top, score=1, doc=2)

    def index_bytes(self) -> int:
        """Bytes of the index Seismic saves (its inverted lists, summaries and forward index)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with quiet():
            self.index.save(str(self.folder / "seismic"))
        size = _disk_bytes(self.folder)
        shutil.rmtree(self.folder, ignore_errors=True)
        return size

    def settings(self) -> dict:
        return {**self.build, **self.search_params}


class MilvusLiteEngine:
    """csrv2.index.milvus.MilvusSparse on a milvus-lite 2.5 engine started on a file in `folder`."""

    name, exact, own_threads = "milvus_lite", True, True
    index_type = "SPARSE_INVERTED_INDEX"

    def __init__(self, codes: SparseCodes, config: EnginesConfig, folder: Path):
        from pymilvus import MilvusClient

        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.uri = folder, str(folder / "bench.db")
        self.client = MilvusClient(self.uri)
        self.store = MilvusSparse(self.client, "bench")
        self.store.create(codes.dim, index_type=self.index_type)
        self.store.upsert(codes, batch=10_000)
        self.client.flush("bench")  # seal the segments so the search goes through the built index
        for _ in range(600):
            info = self.client.describe_index("bench", self.store.vector_field)
            if not info.get("pending_index_rows"):
                break
            time.sleep(0.5)

    def prepare(self, queries: SparseCodes) -> SparseCodes:
        return queries

    def search(self, queries: SparseCodes, top: int, threads: int) -> Result:
        scores, ids = self.store.search(queries, top=top, batch=1000)
        return scores.numpy(), ids.numpy()

    def index_bytes(self) -> int:
        return _disk_bytes(self.folder)

    def close(self) -> None:
        from milvus_lite.server_manager import server_manager_instance

        self.client.close()
        server_manager_instance.release_server(self.uri)
        shutil.rmtree(self.folder, ignore_errors=True)

    def settings(self) -> dict:
        return {"index_type": self.index_type, "drop_ratio_build": 0.0, "drop_ratio_search": 0.0}


class MilvusLiteWandEngine(MilvusLiteEngine):
    name, index_type = "milvus_lite_wand", "SPARSE_WAND"


class PisaEngine:
    """PISA (pyterrier-pisa): the codes as pre-tokenised documents {latent: weight}, weights × scale rounded to
    integer impacts; queries the same; block-max WAND over the quantised scores."""

    name, exact, own_threads = "pisa", False, False

    def __init__(self, codes: SparseCodes, config: EnginesConfig, folder: Path):
        from pyterrier_pisa import PisaIndex

        self.folder, self.scale = folder, config.pisa_scale
        idx, val = codes.indices.numpy(), codes.values.numpy()
        docs = (
            {"docno": str(row), "toks": {f"l{i}": float(v) for i, v in zip(idx[row], val[row]) if v != 0}}
            for row in range(len(idx))
        )
        self.index = PisaIndex(str(folder), stemmer="none", threads=1, overwrite=True)
        self.retrievers: dict[tuple[int, int], Any] = {}
        with quiet():  # indexing, and the quantised block-max index PISA compresses on the first query
            self.index.toks_indexer(scale=self.scale).index(docs)
            self.search(self.prepare(codes[:1]), 10, 1)

    def prepare(self, queries: SparseCodes):
        import pandas as pd

        idx, val = queries.indices.numpy(), queries.values.numpy()
        rows = [
            {"qid": str(q), "query_toks": {f"l{i}": float(v) for i, v in zip(idx[q], val[q]) if v != 0}}
            for q in range(len(idx))
        ]
        return pd.DataFrame(rows)

    def search(self, frame, top: int, threads: int) -> Result:
        key = (top, threads or os.cpu_count() or 1)
        if key not in self.retrievers:
            self.retrievers[key] = self.index.quantized(num_results=top, threads=key[1], toks_scale=self.scale)
        found = self.retrievers[key](frame)
        scores = np.full((len(frame), top), -np.inf, np.float32)
        ids = np.full((len(frame), top), -1, np.int64)
        for qid, group in found.groupby("qid", sort=False):
            q = int(qid)
            ranked = group.sort_values("rank")[:top]
            scores[q, : len(ranked)] = ranked["score"].to_numpy(np.float32) / (self.scale * self.scale)
            ids[q, : len(ranked)] = ranked["docno"].astype(np.int64).to_numpy()
        return scores, ids

    def index_bytes(self) -> int:
        return _disk_bytes(self.folder, exclude=("fwd.",))

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def settings(self) -> dict:
        return {"toks_scale": self.scale, "query_algorithm": "block_max_wand (pyterrier-pisa default)"}


class QdrantLocalEngine:
    name, exact, own_threads = "qdrant_local", True, True

    def __init__(self, codes: SparseCodes, config: EnginesConfig, folder: Path):
        from qdrant_client import QdrantClient

        self.store = QdrantSparse(QdrantClient(":memory:"), "bench")
        self.store.create(codes.dim)
        self.store.upsert(codes, batch=4096)
        self.nnz = int((codes.values != 0).sum())

    def prepare(self, queries: SparseCodes) -> SparseCodes:
        return queries

    def search(self, queries: SparseCodes, top: int, threads: int) -> Result:
        scores, ids = self.store.search(queries, top=top)
        return scores.numpy(), ids.numpy()

    def index_bytes(self) -> int:
        return 8 * self.nnz  # a u32 latent and an f32 value per non-zero: the least a Qdrant server stores

    def settings(self) -> dict:
        return {"mode": "local (Python re-implementation, not the engine)"}


@contextlib.contextmanager
def quiet():
    """File descriptors 1 and 2 sent to /dev/null for the block (native code that prints bypasses sys.stdout)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def _rows(found, n_q: int, top: int, score: int, doc: int) -> Result:
    """Seismic's answers [[(query id, score, doc id)]] → (scores, ids) (Q, top); a row is placed by its query id
    (a multi-threaded batch_search does not return them in query order)."""
    scores = np.full((n_q, top), -np.inf, np.float32)
    ids = np.full((n_q, top), -1, np.int64)
    for hits in found:
        if not hits:
            continue
        q = int(hits[0][0])
        hits = hits[:top]
        scores[q, : len(hits)] = [h[score] for h in hits]
        ids[q, : len(hits)] = [int(h[doc]) for h in hits]
    return scores, ids


def _disk_bytes(folder: Path, exclude: tuple[str, ...] = ()) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file() and not p.name.startswith(exclude))


CLASSES = {
    "sparse_index": SparseIndexEngine,
    "seismic": SeismicEngine,
    "milvus_lite": MilvusLiteEngine,
    "milvus_lite_wand": MilvusLiteWandEngine,
    "pisa": PisaEngine,
    "qdrant_local": QdrantLocalEngine,
}
