"""What the vector-database adapters (csrv2.index.qdrant, csrv2.index.milvus) share: the queries checked and
packed as SparseIndex checks them, and the answers of an engine turned into SparseIndex's result shape.

An engine returns, per query, only the documents sharing a latent with it, best first, and which documents of a
group tied at the cut it returns is its own choice. `ranked` pads short rows with (-inf, -1) and orders equal
scores by lower id; with exact_ties it asks again, with a larger limit, for every query whose tie group may run
past the answer, until the lowest ids of the group are in (as SparseIndex and brute force return them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse

from csrv2.head.codes import SparseCodes
from csrv2.index.inputs import as_packed

Codes = SparseCodes | scipy.sparse.spmatrix
# ask(queries, limit) → per query, (scores (n,) float32, ids (n,)) as the engine returned them, n ≤ limit
Ask = Callable[[list[int], int], list[tuple[np.ndarray, Sequence]]]


def packed_codes(store, codes: Codes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(R, k) int64 latents and float32 values of `codes`, checked against the store's width; a store that does not
    know its width yet (store.dim None) takes it from the codes."""
    if store.dim is None:
        if isinstance(codes, SparseCodes):
            store.dim = codes.dim
        elif scipy.sparse.issparse(codes):
            store.dim = codes.shape[1]
    return as_packed(codes, store.dim if store.dim is not None else 0, name)


def ranked(
    ask: Ask,
    todo: list[int],
    n_q: int,
    top: int,
    exact_ties: bool,
    max_limit: int | None = None,
    string_ids: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(scores (n_q, top) float32, ids (n_q, top)) for the queries `todo` (the others match nothing): best first,
    equal scores by lower id, short rows padded with -inf and -1 (None for string ids, an object array).
    exact_ties: ask for 2 · top, then 4× more (up to max_limit) for a query whose top-th score ties with the last
    one returned."""
    scores_out = np.full((n_q, top), -np.inf, np.float32)
    ids_out = np.full((n_q, top), None, object) if string_ids else np.full((n_q, top), -1, np.int64)
    cap = max_limit if max_limit is not None else np.inf
    limit = int(min(2 * top, cap)) if exact_ties else top
    while todo:
        again = []
        for q, (scores, ids) in zip(todo, ask(todo, limit)):
            scores = np.asarray(scores, np.float32)
            if exact_ties and len(scores) == limit and scores[top - 1] <= scores[-1] and limit < cap:
                again.append(q)  # the top-th score ties with the last returned: lower ids may be missing
                continue
            order = sorted(range(len(scores)), key=lambda j: (-scores[j], ids[j]))[:top]
            scores_out[q, : len(order)] = scores[order]
            ids_out[q, : len(order)] = [ids[j] for j in order]
        todo, limit = again, int(min(4 * limit, cap))
    return scores_out, ids_out
