"""k-sparse codes in a Qdrant collection's sparse vectors: the path when one machine's SparseIndex is not enough.

    from qdrant_client import QdrantClient                 # pip install 'csrv2[qdrant]'
    store = QdrantSparse(QdrantClient(url="http://qdrant:6333"), "docs")   # or QdrantClient(":memory:") / path=...
    store.create(dim=head.hidden)                          # a collection with one sparse vector, "csrv2"
    store.upsert(head.encode(docs, k=2), payloads=[{"title": t} for t in titles])   # ids 0 … N-1 by default
    scores, ids = store.search(head.encode(queries, k=2), top=10)                  # (Q, 10) float32, int64
    scores, ids = store.search(queries, top=10, filter={"title": "…"})              # payload filter (or models.Filter)

Beside a dense vector (hybrid search): QdrantSparse(client, "existing").attach(dim=head.hidden) adds the named sparse
vector "csrv2" to a collection that has points already (Qdrant ≥ 1.18, client and server), and
store.set_vectors(codes, ids) writes it onto those points, keeping their other vectors and payloads.
to_sparse_vectors(codes) gives the models.SparseVector of each row, for requests written by hand (prefetch, fusion).

A code row becomes one point: id, payload and a sparse vector {latent: value} holding the row's non-zero slots
(zeros dropped). Qdrant scores a sparse query by dot product over the latents it shares with a point and does
not approximate: the search is exact, like `csrv2.SparseIndex` (a server reads only the query's posting lists;
the local in-process mode scans every point in Python, for tests — docs/serving.md has the figures).
Needs qdrant-client ≥ 1.10 (query_batch_points).

Results follow SparseIndex.search: scores (Q, top) float32 and ids (Q, top) int64, best first, equal scores by
lower id, torch tensors when the queries are SparseCodes, numpy otherwise. Two differences:
- Qdrant returns only points sharing a latent with the query, so a row with fewer such points is padded with
  (-inf, -1), where SparseIndex lists the lowest-id documents at score 0, as brute force does.
- Among points tied at the cut, Qdrant picks which ones to return; search(..., exact_ties=True) asks again until
  the lowest ids are in, as SparseIndex's (at the cost of more requests: QdrantSparse.search says when).
With non-negative codes (a ReLU head's) the scores equal SparseIndex's (float32 rounding apart), every id has the
score it is listed with, and with exact_ties=True the ids are SparseIndex's too, bar its score-0 fillers.

Bad input is refused before anything is sent, naming the row, as SparseIndex does: NaN / inf values, a latent
given twice among a row's active slots, latents outside [0, dim). qdrant_client is optional and imported only by
the functions that build its request objects; the client itself is the caller's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from csrv2.head.codes import SparseCodes
from csrv2.index.inputs import as_packed
from csrv2.index.vector_db import Codes, packed_codes, ranked


def _models():
    from qdrant_client import models  # optional and slow to import (~1.4 s): only when a request is built

    return models


class QdrantSparse:
    """One Qdrant collection whose sparse vector `vector_name` holds k-sparse codes; exact top-n by dot product.

    client: a qdrant_client.QdrantClient — local in-process (":memory:", path=...) or a server / cluster (url=...).
    dim: the codes' width (h); set by create(), else taken from the first codes given. Latents must lie in
    [0, dim) (a Qdrant server stores them as u32).
    """

    def __init__(self, client, collection: str, vector_name: str = "csrv2", dim: int | None = None):
        self.client, self.collection, self.vector_name, self.dim = client, collection, vector_name, dim

    # -- collection ------------------------------------------------------------------------------------------------
    def create(self, dim: int, on_disk: bool = False, **collection_options: Any) -> None:
        """Create the collection with one sparse vector (float32 weights, dot product, no IDF modifier).

        on_disk=True keeps a server's inverted index memory-mapped on disk instead of RAM (local mode ignores it).
        collection_options go to client.create_collection as they are, e.g. shard_number=6, replication_factor=2
        on a cluster (docs/serving.md). An existing collection is refused, never dropped."""
        if not isinstance(dim, int | np.integer) or dim < 1:
            raise ValueError(f"QdrantSparse.create: dim must be a positive int, got {dim!r}")
        if self.client.collection_exists(self.collection):
            raise ValueError(f"QdrantSparse.create: collection {self.collection!r} exists already")
        models = _models()
        index = models.SparseIndexParams(on_disk=on_disk, datatype=models.Datatype.FLOAT32)
        self.client.create_collection(
            self.collection,
            vectors_config={},
            sparse_vectors_config={self.vector_name: models.SparseVectorParams(index=index)},
            **collection_options,
        )
        self.dim = int(dim)

    def attach(self, dim: int, on_disk: bool = False) -> None:
        """Add the sparse vector `vector_name` to an existing collection (e.g. one holding a dense vector and payloads:
        hybrid search); its points have no csrv2 vector until set_vectors() writes one. Needs Qdrant ≥ 1.18 (server
        and qdrant-client: create_vector_name). A collection that has the vector already is refused."""
        if not isinstance(dim, int | np.integer) or dim < 1:
            raise ValueError(f"QdrantSparse.attach: dim must be a positive int, got {dim!r}")
        if not self.client.collection_exists(self.collection):
            raise ValueError(f"QdrantSparse.attach: no collection {self.collection!r}; create() makes a new one")
        params = self.client.get_collection(self.collection).config.params
        if self.vector_name in (params.sparse_vectors or {}):
            raise ValueError(
                f"QdrantSparse.attach: {self.collection!r} has a sparse vector {self.vector_name!r} already"
            )
        if not hasattr(self.client, "create_vector_name"):
            raise ValueError("QdrantSparse.attach needs qdrant-client ≥ 1.18 (create_vector_name)")
        models = _models()
        config = models.SparseVectorConfig(datatype=models.VectorStorageDatatype.FLOAT32)
        self.client.create_vector_name(self.collection, self.vector_name, models.SparseVectorNameConfig(sparse=config))
        if on_disk:  # the new vector's index parameters, as create() sets them
            index = models.SparseIndexParams(on_disk=True)
            self.client.update_collection(
                self.collection, sparse_vectors_config={self.vector_name: models.SparseVectorParams(index=index)}
            )
        self.dim = int(dim)

    def __len__(self) -> int:
        """Points in the collection (an exact count)."""
        return self.client.count(self.collection, exact=True).count

    # -- writing ---------------------------------------------------------------------------------------------------
    def upsert(
        self,
        codes: Codes,
        ids: Sequence[int] | np.ndarray | None = None,
        payloads: Sequence[dict | None] | None = None,
        batch: int = 1024,
    ) -> np.ndarray:
        """Write codes (N, k) SparseCodes or (N, h) scipy sparse as N points, `batch` points per request; returns
        the ids (N,) int64. ids default to the row numbers 0 … N-1, so a second upsert without ids overwrites
        those points: pass ids (distinct non-negative ints) to add more. An existing id is replaced (Qdrant's
        upsert). payloads: one dict (or None) per row, stored with the point."""
        idx, val = packed_codes(self, codes, "QdrantSparse.upsert(codes)")
        n = idx.shape[0]
        ids = np.arange(n, dtype=np.int64) if ids is None else _checked_ids(ids, n)
        if payloads is not None and len(payloads) != n:
            raise ValueError(f"QdrantSparse.upsert: {len(payloads)} payloads for {n} rows")
        if not isinstance(batch, int | np.integer) or batch < 1:
            raise ValueError(f"QdrantSparse.upsert: batch must be a positive int, got {batch!r}")
        models = _models()
        for start in range(0, n, batch):
            points = [
                models.PointStruct(
                    id=int(ids[row]),
                    vector={self.vector_name: _sparse_vector(models, idx[row], val[row])},
                    payload=None if payloads is None else payloads[row],
                )
                for row in range(start, min(n, start + batch))
            ]
            self.client.upsert(self.collection, points=points, wait=True)
        return ids

    def set_vectors(self, codes: Codes, ids: Sequence[int] | np.ndarray, batch: int = 1024) -> np.ndarray:
        """Write the csrv2 vector of existing points (N, k) codes → ids (N,), keeping their other vectors and their
        payloads (Qdrant's update_vectors; an id without a point is an error from Qdrant). Returns the ids."""
        idx, val = packed_codes(self, codes, "QdrantSparse.set_vectors(codes)")
        n = idx.shape[0]
        ids = _checked_ids(ids, n)
        if not isinstance(batch, int | np.integer) or batch < 1:
            raise ValueError(f"QdrantSparse.set_vectors: batch must be a positive int, got {batch!r}")
        models = _models()
        for start in range(0, n, batch):
            points = [
                models.PointVectors(
                    id=int(ids[row]), vector={self.vector_name: _sparse_vector(models, idx[row], val[row])}
                )
                for row in range(start, min(n, start + batch))
            ]
            self.client.update_vectors(self.collection, points=points, wait=True)
        return ids

    def delete(self, ids: Sequence[int] | np.ndarray) -> None:
        """Delete the points with these ids (an id without a point is ignored)."""
        keys = [int(i) for i in np.asarray(ids, dtype=np.int64).ravel()]
        if keys:
            self.client.delete(self.collection, points_selector=_models().PointIdsList(points=keys), wait=True)

    def payloads(self, ids: Sequence[int] | np.ndarray) -> list[dict | None]:
        """The payload of each id, in the order given (None for an id with no point or no payload)."""
        ids = [int(i) for i in np.asarray(ids, dtype=np.int64).ravel()]
        found = self.client.retrieve(self.collection, ids=ids, with_payload=True, with_vectors=False)
        by_id = {int(p.id): p.payload for p in found}
        return [by_id.get(i) for i in ids]

    # -- search ----------------------------------------------------------------------------------------------------
    def search(self, queries: Codes, top: int = 10, batch: int = 256, exact_ties: bool = False, filter=None):
        """Exact top-`top` points by dot product for each query (Q, k) SparseCodes or (Q, h) scipy sparse.

        filter: only points whose payload matches: a dict {key: value} (every key equals its value) or a
        qdrant_client models.Filter, as it is.

        Returns (scores (Q, top) float32, ids (Q, top) int64), best first, equal scores by lower id among the
        points returned; padded with (-inf, -1) where fewer than `top` points share a latent with the query. torch
        tensors for SparseCodes queries, numpy otherwise (as SparseIndex.search). `batch` queries go in one
        query_batch_points request.

        Which points of a group tied at the cut Qdrant returns is its choice. exact_ties=True makes them the
        lowest ids, as SparseIndex does: it asks for 2 · top points and, for a query whose tie group runs past
        them, again with 4× more until the group is complete — one more request (a full scan in local mode) each
        time, and large answers where many points share one code (k = 2 codes with a single active latent all
        tie)."""
        if not isinstance(top, int | np.integer) or top < 1:
            raise ValueError(f"QdrantSparse.search: top must be a positive int, got {top!r}")
        idx, val = packed_codes(self, queries, "QdrantSparse.search(queries)")
        models = _models()
        condition = payload_filter(filter)
        vectors = [_sparse_vector(models, idx[q], val[q]) for q in range(idx.shape[0])]

        def ask(todo: list[int], limit: int) -> list[tuple[np.ndarray, list[int]]]:
            found = []
            for start in range(0, len(todo), batch):
                requests = [
                    models.QueryRequest(
                        query=vectors[q],
                        using=self.vector_name,
                        limit=limit,
                        filter=condition,
                        with_payload=False,
                        with_vector=False,
                    )
                    for q in todo[start : start + batch]
                ]
                found += self.client.query_batch_points(self.collection, requests=requests)
            return [
                (np.array([p.score for p in r.points], np.float32), [_point_id(p.id) for p in r.points]) for r in found
            ]

        todo = [q for q in range(len(vectors)) if vectors[q].indices]  # a query without active latents matches nothing
        out_s, out_i = ranked(ask, todo, len(vectors), top, exact_ties)
        if isinstance(queries, SparseCodes):
            return torch.from_numpy(out_s), torch.from_numpy(out_i)
        return out_s, out_i


def to_sparse_vectors(codes: Codes, dim: int | None = None) -> list:
    """SparseCodes (N, k) or scipy sparse (N, h) → [models.SparseVector] per row: its non-zero slots, latents
    ascending (the form QdrantSparse writes and queries with), checked as SparseIndex checks codes."""
    width = (
        dim
        if dim is not None
        else (codes.dim if isinstance(codes, SparseCodes) else getattr(codes, "shape", (0, 0))[1])
    )
    idx, val = as_packed(codes, width, "to_sparse_vectors(codes)")
    models = _models()
    return [_sparse_vector(models, idx[row], val[row]) for row in range(idx.shape[0])]


def payload_filter(filter):
    """None, a models.Filter as it is, or {key: value, ...} → a Filter whose every key must match its value."""
    if filter is None:
        return None
    models = _models()
    if isinstance(filter, models.Filter):
        return filter
    if not isinstance(filter, dict):
        raise TypeError(f"filter must be a dict or a qdrant_client models.Filter, got {type(filter).__name__}")
    must = []
    for key, value in filter.items():
        if not isinstance(value, str | int | bool):
            raise ValueError(f"filter: {key} must equal a string, int or bool (Qdrant matches those), got {value!r}")
        must.append(models.FieldCondition(key=str(key), match=models.MatchValue(value=value)))
    return models.Filter(must=must)


def _sparse_vector(models, idx: np.ndarray, val: np.ndarray):
    """One packed row (k,) → models.SparseVector of its non-zero slots, latents ascending."""
    keep = val != 0
    order = np.argsort(idx[keep], kind="stable")
    return models.SparseVector(indices=idx[keep][order].tolist(), values=val[keep][order].tolist())


def _checked_ids(ids, n: int) -> np.ndarray:
    """Point ids (n,) int64: integers, non-negative, distinct within one upsert (a repeat would overwrite)."""
    arr = np.asarray(ids)
    if arr.shape != (n,) or (n and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"QdrantSparse.upsert: ids must be {n} integers, got {arr.dtype} {arr.shape}")
    arr = arr.astype(np.int64)
    if n and arr.min() < 0:
        raise ValueError(f"QdrantSparse.upsert: ids must be non-negative, row {int(np.argmin(arr))} has {arr.min()}")
    uniq, counts = np.unique(arr, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"QdrantSparse.upsert: id {int(uniq[counts > 1][0])} is given twice")
    return arr


def _point_id(point_id) -> int:
    if not isinstance(point_id, int):
        raise TypeError(f"QdrantSparse: point id {point_id!r} is not an integer (UUID ids are not supported here)")
    return point_id
