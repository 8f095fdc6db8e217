"""k-sparse codes in a Milvus collection (SPARSE_FLOAT_VECTOR): one client code for an embedded engine, a server or a
cluster — only the URI given to pymilvus.MilvusClient changes.

    from pymilvus import MilvusClient                      # pip install 'csrv2[milvus]'
    client = MilvusClient("docs.db")                       # milvus-lite: the engine in-process, from a local file
    # client = MilvusClient("http://milvus:19530")         # one Milvus server, or a cluster's proxy: nothing else changes
    store = MilvusSparse(client, "docs")
    store.create(dim=head.hidden)                          # int64 ids; create(dim, id_type="str") for string ids
    store.upsert(head.encode(docs, k=2).normalized(), ids=[...], payloads=[{"lang": "en"}, ...])
    scores, ids = store.search(queries, top=10, filter={"lang": "en"})   # or a Milvus expression 'lang == "en"'
    store.delete([3, 4])

A code row becomes one entity: its id, its payload keys (Milvus' dynamic fields, filterable) and a sparse vector
{latent: value} of the row's non-zero slots. The index is SPARSE_INVERTED_INDEX (or SPARSE_WAND) with the inner
product; with drop_ratio_build = drop_ratio_search = 0 (the defaults here) Milvus drops no posting and the search is
exact, like csrv2.SparseIndex. The collection reads with Strong consistency, so a search sees every finished upsert.

Results follow SparseIndex.search: scores (Q, top) float32 and ids (Q, top), best first, equal scores by lower id,
torch tensors when the queries are SparseCodes and the ids are ints; string ids come back as a numpy object array
padded with None. As with csrv2.index.qdrant: Milvus returns only entities sharing a latent with the query (a short
row is padded with (-inf, -1)), and which entities of a tie group at the cut it returns is its choice —
exact_ties=True asks again until the lowest ids are in. Milvus caps one answer at 16,384 entities.

Milvus-lite 2.5.x (pinned by the `milvus` extra) runs the Milvus engine as a native process started by the client
from its wheel; the 3.x line re-implements it in Python (not what a server runs). pymilvus is the caller's import.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from csrv2.head.codes import SparseCodes
from csrv2.index.vector_db import Codes, packed_codes, ranked

INDEX_TYPES = ("SPARSE_INVERTED_INDEX", "SPARSE_WAND")
MAX_LIMIT = 16384  # Milvus' largest topk / nq per search


def _data_type():
    from pymilvus import DataType  # optional: only when a collection is created

    return DataType


class MilvusSparse:
    """One Milvus collection whose field `vector_field` holds k-sparse codes; exact top-n by inner product.

    client: a pymilvus.MilvusClient ("file.db" for milvus-lite, "http://host:19530" for a server or cluster).
    dim: the codes' width (h); set by create(), else taken from the first codes given (Milvus stores no width).
    """

    def __init__(
        self, client, collection: str, vector_field: str = "csrv2", id_field: str = "id", dim: int | None = None
    ):
        self.client, self.collection, self.dim = client, collection, dim
        self.vector_field, self.id_field = vector_field, id_field
        self.id_type: str | None = None  # "int" or "str": set by create(), else read from the collection on first use

    # -- collection ------------------------------------------------------------------------------------------------
    def create(
        self,
        dim: int,
        id_type: str = "int",
        max_id_length: int = 512,
        index_type: str = "SPARSE_INVERTED_INDEX",
        **collection_options: Any,
    ) -> None:
        """Create the collection: a primary key (int64, or varchar up to max_id_length for id_type="str"), the
        sparse vector field, dynamic fields for payloads, and an exact inner-product index (drop_ratio_build 0).
        collection_options go to client.create_collection (e.g. num_shards=4 on a cluster). An existing collection
        is refused, never dropped."""
        if not isinstance(dim, int | np.integer) or dim < 1:
            raise ValueError(f"MilvusSparse.create: dim must be a positive int, got {dim!r}")
        if id_type not in ("int", "str"):
            raise ValueError(f"MilvusSparse.create: id_type must be 'int' or 'str', got {id_type!r}")
        if index_type not in INDEX_TYPES:
            raise ValueError(f"MilvusSparse.create: index_type must be one of {INDEX_TYPES}, got {index_type!r}")
        if self.client.has_collection(self.collection):
            raise ValueError(f"MilvusSparse.create: collection {self.collection!r} exists already")
        types = _data_type()
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=True)
        if id_type == "int":
            schema.add_field(self.id_field, types.INT64, is_primary=True)
        else:
            schema.add_field(self.id_field, types.VARCHAR, is_primary=True, max_length=max_id_length)
        schema.add_field(self.vector_field, types.SPARSE_FLOAT_VECTOR)
        index = self.client.prepare_index_params()
        index.add_index(self.vector_field, index_type=index_type, metric_type="IP", params={"drop_ratio_build": 0.0})
        collection_options.setdefault("consistency_level", "Strong")
        self.client.create_collection(self.collection, schema=schema, index_params=index, **collection_options)
        self.dim, self.id_type = int(dim), id_type

    def __len__(self) -> int:
        """Entities in the collection (a count(*) query: deleted entities are not counted)."""
        found = self.client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(found[0]["count(*)"])

    def drop(self) -> None:
        """Drop the collection (all its entities)."""
        self.client.drop_collection(self.collection)

    def _ids_are_strings(self) -> bool:
        if self.id_type is None:
            fields = self.client.describe_collection(self.collection)["fields"]
            primary = next(f for f in fields if f.get("is_primary"))
            self.id_type = "int" if primary["type"] == _data_type().INT64 else "str"
        return self.id_type == "str"

    # -- writing ---------------------------------------------------------------------------------------------------
    def upsert(
        self,
        codes: Codes,
        ids: Sequence[int] | Sequence[str] | np.ndarray | None = None,
        payloads: Sequence[Mapping[str, Any] | None] | None = None,
        batch: int = 1024,
    ) -> np.ndarray:
        """Write codes (N, k) SparseCodes or (N, h) scipy sparse as N entities, `batch` per request; returns the ids.

        ids: distinct ints (≥ 0) or strings, as the collection's id_type; default the row numbers 0 … N-1. An existing
        id is replaced (Milvus' upsert). payloads: one dict (or None) per row; its keys become filterable fields."""
        idx, val = packed_codes(self, codes, "MilvusSparse.upsert(codes)")
        n = idx.shape[0]
        strings = self._ids_are_strings()
        ids = np.arange(n, dtype=np.int64) if ids is None and not strings else checked_ids(ids, n, strings)
        if payloads is not None and len(payloads) != n:
            raise ValueError(f"MilvusSparse.upsert: {len(payloads)} payloads for {n} rows")
        if not isinstance(batch, int | np.integer) or batch < 1:
            raise ValueError(f"MilvusSparse.upsert: batch must be a positive int, got {batch!r}")
        reserved = {self.id_field, self.vector_field}
        for start in range(0, n, batch):
            rows = []
            for row in range(start, min(n, start + batch)):
                payload = dict(payloads[row] or {}) if payloads is not None else {}
                if reserved & payload.keys():
                    raise ValueError(f"MilvusSparse.upsert: payload of row {row} uses a reserved key {reserved}")
                key = str(ids[row]) if strings else int(ids[row])
                rows.append({**payload, self.id_field: key, self.vector_field: sparse_dict(idx[row], val[row])})
            self.client.upsert(self.collection, rows)
        return ids

    def delete(self, ids: Sequence[int] | Sequence[str] | np.ndarray) -> None:
        """Delete the entities with these ids (an id without an entity is ignored)."""
        strings = self._ids_are_strings()
        keys = [str(i) if strings else int(i) for i in np.asarray(ids).ravel()]
        if keys:
            self.client.delete(self.collection, ids=keys)

    def payloads(self, ids: Sequence[int] | Sequence[str] | np.ndarray) -> list[dict | None]:
        """The payload of each id, in the order given (None for an id without an entity)."""
        strings = self._ids_are_strings()
        keys = [str(i) if strings else int(i) for i in np.asarray(ids).ravel()]
        found = self.client.get(self.collection, ids=keys, output_fields=["*"]) if keys else []
        hidden = {self.id_field, self.vector_field}
        by_id = {row[self.id_field]: {k: v for k, v in row.items() if k not in hidden} for row in found}
        return [by_id.get(key) for key in keys]

    # -- search ----------------------------------------------------------------------------------------------------
    def search(
        self,
        queries: Codes,
        top: int = 10,
        filter: str | Mapping[str, Any] | None = None,
        batch: int = 256,
        exact_ties: bool = False,
    ):
        """Exact top-`top` entities by inner product for each query (Q, k) SparseCodes or (Q, h) scipy sparse.

        filter: a Milvus boolean expression ('lang == "en" and year > 2020'), or a dict {field: value} meaning every
        field equals its value. Returns (scores (Q, top) float32, ids (Q, top)) as the module docstring says; `batch`
        queries go in one request. exact_ties: as QdrantSparse.search (asks for 2 · top, then 4× more for a query
        whose tie group at the cut runs past the answer)."""
        if not isinstance(top, int | np.integer) or not 1 <= top <= MAX_LIMIT:
            raise ValueError(f"MilvusSparse.search: top must be an int in [1, {MAX_LIMIT}], got {top!r}")
        idx, val = packed_codes(self, queries, "MilvusSparse.search(queries)")
        strings = self._ids_are_strings()
        expression = filter_expression(filter)
        vectors = [sparse_dict(idx[q], val[q]) for q in range(idx.shape[0])]
        params = {"metric_type": "IP", "params": {"drop_ratio_search": 0.0}}

        def ask(todo: list[int], limit: int) -> list[tuple[np.ndarray, list]]:
            found = []
            for start in range(0, len(todo), batch):
                found += self.client.search(
                    self.collection,
                    data=[vectors[q] for q in todo[start : start + batch]],
                    anns_field=self.vector_field,
                    limit=limit,
                    filter=expression,
                    search_params=params,
                    output_fields=[],
                )
            return [(np.array([h["distance"] for h in hits], np.float32), [h["id"] for h in hits]) for hits in found]

        todo = [q for q in range(len(vectors)) if vectors[q]]  # a query without active latents matches nothing
        out_s, out_i = ranked(ask, todo, len(vectors), top, exact_ties, max_limit=MAX_LIMIT, string_ids=strings)
        if isinstance(queries, SparseCodes) and not strings:
            return torch.from_numpy(out_s), torch.from_numpy(out_i)
        return out_s, out_i


def sparse_dict(idx: np.ndarray, val: np.ndarray) -> dict[int, float]:
    """One packed row (k,) → {latent: value} of its non-zero slots, latents ascending (Milvus' sparse row form)."""
    keep = val != 0
    order = np.argsort(idx[keep], kind="stable")
    return dict(zip(idx[keep][order].tolist(), val[keep][order].tolist()))


def filter_expression(filter: str | Mapping[str, Any] | None) -> str:
    """A Milvus expression as given, or {field: value, ...} → 'field == value and ...' (values JSON-quoted)."""
    if filter is None:
        return ""
    if isinstance(filter, str):
        return filter
    if not isinstance(filter, Mapping):
        raise TypeError(f"filter must be a Milvus expression (str) or a dict, got {type(filter).__name__}")
    parts = []
    for key, value in filter.items():
        if not str(key).isidentifier():
            raise ValueError(f"filter: {key!r} is not a field name")
        if not isinstance(value, str | int | float | bool) or isinstance(value, float) and not np.isfinite(value):
            raise ValueError(f"filter: {key} must equal a string, int, float or bool, got {value!r}")
        parts.append(f"{key} == {json.dumps(value)}")
    return " and ".join(parts)


def checked_ids(ids, n: int, strings: bool) -> np.ndarray:
    """Entity ids (n,): ints ≥ 0 (int64) or non-empty strings (object), distinct within one upsert."""
    if ids is None:
        raise ValueError("MilvusSparse.upsert: a collection with string ids needs ids")
    arr = np.asarray(ids, dtype=object if strings else None)
    if arr.shape != (n,):
        raise ValueError(f"MilvusSparse.upsert: ids must be {n} values, got shape {arr.shape}")
    if strings:
        bad = [i for i, v in enumerate(arr) if not isinstance(v, str) or not v]
        if bad:
            raise ValueError(f"MilvusSparse.upsert: id of row {bad[0]} ({arr[bad[0]]!r}) is not a non-empty string")
    else:
        if n and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"MilvusSparse.upsert: ids must be {n} integers, got {arr.dtype}")
        arr = arr.astype(np.int64)
        if n and arr.min() < 0:
            raise ValueError(f"MilvusSparse.upsert: ids must be ≥ 0, row {int(np.argmin(arr))} has {arr.min()}")
    uniq, counts = np.unique(arr.astype(str) if strings else arr, return_counts=True)
    if (counts > 1).any():
        twice = uniq[counts > 1][0]
        raise ValueError(f"MilvusSparse.upsert: id {str(twice) if strings else int(twice)!r} is given twice")
    return arr
