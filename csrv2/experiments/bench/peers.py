"""The peers SparseIndex is measured against, each one small class with the same shape, and sentence-transformers'
own embedding and CSR-training paths (what a user would run without csrv2).

    peer = Peer(database)                    build (the caller times it): SparseCodes (N, k) or float32 (N, m)
    native = peer.prepare(queries)           SparseCodes (Q, k) or float32 (Q, m) → the peer's own query form
                                             (untimed: a real caller holds its queries in that form already)
    scores, ids = peer.search(native, top)   numpy (Q, top) float32, (Q, top) int64, best first
    peer.bytes_per_vector()                  bytes of the searchable structure / N

What a peer guarantees is data on its class, read by the benchmark and the tests:
    ties_by_lower_id   equal scores are ordered by lower id (else: any order among ties, compare score sets)
    zero_scores        documents sharing no latent with the query (score 0) can fill a row, as in brute force;
                       False: such a row is padded with (-inf, -1) after the candidates

Codes become CSR only through csrv2.head.codes.packed_to_csr (`to_csr`); the torch tensors are built from that CSR.
No peer changes the codes it is given. faiss, sentence-transformers and qdrant-client are optional: they are
imported when a peer that needs them is built.

measure_sparse / measure_dense time every peer on one database (csrv2.experiments.measure.measure_search) and check
its top scores against the exact reference: SparseIndex for codes, DenseIndex for vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse
import torch

from csrv2.experiments import measure
from csrv2.experiments.measure import measure_search, same_scores, timed
from csrv2.head.codes import SparseCodes, packed_to_csr
from csrv2.index.dense import DenseIndex
from csrv2.index.qdrant import QdrantSparse
from csrv2.index.sparse_index import SparseIndex

Result = tuple[np.ndarray, np.ndarray]  # scores (Q, top) float32, ids (Q, top) int64
Budget = dict[str, tuple[int, int]]  # method → (single queries timed, queries per batch call)


class SparseIndexPeer:
    """csrv2.SparseIndex itself, in the peers' shape (the reference the sparse peers are compared with)."""

    name = "sparse_index"
    ties_by_lower_id, zero_scores = True, True

    def __init__(self, codes: SparseCodes, threads: int | None = None):
        self.index = SparseIndex.build(codes)
        self.threads = threads  # numba threads for a batch; one query always runs on one thread

    def prepare(self, codes: SparseCodes) -> SparseCodes:
        return codes

    def search(self, queries: SparseCodes, top: int) -> Result:
        scores, ids = self.index.search(queries, top=top, threads=self.threads)
        return scores.numpy(), ids.numpy()

    def bytes_per_vector(self) -> float:
        return self.index.memory_bytes() / len(self.index)


class ScipyPeer:
    """(Q, h) CSR @ (h, N) CSR (the database stored transposed once) → sparse (Q, N) scores, argpartition top-n."""

    name = "scipy"
    ties_by_lower_id, zero_scores = True, False  # the product holds only documents sharing a latent

    def __init__(self, codes: SparseCodes):
        self.matrix_t = to_csr(codes).T.tocsr()  # (h, N) float32

    def prepare(self, codes: SparseCodes) -> scipy.sparse.csr_matrix:
        return to_csr(codes)  # (Q, h)

    def search(self, queries: scipy.sparse.csr_matrix, top: int) -> Result:
        product = (queries @ self.matrix_t).tocsr()  # (Q, N), only the non-zero scores
        ids = np.full((queries.shape[0], top), -1, np.int64)
        scores = np.full((queries.shape[0], top), -np.inf, np.float32)
        for row in range(queries.shape[0]):
            lo, hi = product.indptr[row], product.indptr[row + 1]
            data, cols = product.data[lo:hi], product.indices[lo:hi]
            if len(data) > top:
                cut = -np.partition(-data, top - 1)[top - 1]  # the top-th best score
                keep = np.flatnonzero(data >= cut)  # all ties at the cut stay in, so the lower ids can win
                data, cols = data[keep], cols[keep]
            order = np.lexsort((cols, -data))[:top]  # score descending, then lower id
            ids[row, : len(order)] = cols[order]
            scores[row, : len(order)] = data[order]
        return scores, ids

    def bytes_per_vector(self) -> float:
        m = self.matrix_t
        return (m.data.nbytes + m.indices.nbytes + m.indptr.nbytes) / m.shape[1]


def to_csr(codes: SparseCodes) -> scipy.sparse.csr_matrix:
    """SparseCodes (N, k) → scipy CSR (N, h) float32 by csrv2.head.codes.packed_to_csr, given copies of the arrays:
    packed_to_csr sorts and compacts the arrays it is given in place (sum_duplicates, eliminate_zeros), and
    SparseCodes.to_scipy passes it the tensors' own memory, which would rewrite the codes themselves."""
    return packed_to_csr(codes.indices.numpy().copy(), codes.values.detach().numpy().copy(), codes.dim)


def torch_coo(codes: SparseCodes) -> torch.Tensor:
    """SparseCodes (N, k) → coalesced torch sparse COO (N, h), what sentence-transformers' sparse encoders return."""
    coo = to_csr(codes).tocoo()
    index = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    values = torch.from_numpy(coo.data)
    return torch.sparse_coo_tensor(index, values, coo.shape, check_invariants=False).coalesce()


class TorchSparsePeer:
    """torch.mm(query COO, corpus COO transposed once at build) → dense (Q, N) → torch.topk: the
    sentence-transformers path without its per-call corpus preparation."""

    name = "torch_sparse"
    ties_by_lower_id, zero_scores = False, True  # torch.topk orders ties arbitrarily; the dense row holds the zeros

    def __init__(self, codes: SparseCodes):
        self.corpus_t = torch_coo(codes).t().coalesce()  # (h, N)

    def prepare(self, codes: SparseCodes) -> torch.Tensor:
        return torch_coo(codes)

    def search(self, queries: torch.Tensor, top: int) -> Result:
        scores, ids = torch.topk(torch.mm(queries, self.corpus_t).to_dense(), top, dim=1)
        return scores.numpy(), ids.numpy()

    def bytes_per_vector(self) -> float:
        return (self.corpus_t.indices().nbytes + self.corpus_t.values().nbytes) / self.corpus_t.shape[1]


class STSparsePeer:
    """sentence_transformers.util.semantic_search(q, corpus, score_function=dot_score) on torch sparse COO, as
    shipped: it re-selects and re-transposes the whole corpus on every call."""

    name = "st_sparse"
    ties_by_lower_id, zero_scores = False, True

    def __init__(self, codes: SparseCodes):
        from sentence_transformers.util import dot_score, semantic_search

        self._search = lambda q, top: semantic_search(q, self.corpus, top_k=top, score_function=dot_score)
        self.corpus = torch_coo(codes)  # (N, h)

    def prepare(self, codes: SparseCodes) -> torch.Tensor:
        return torch_coo(codes)

    def search(self, queries: torch.Tensor, top: int) -> Result:
        hits = self._search(queries, top)  # per query: [{"corpus_id", "score"}], best first
        scores = np.full((len(hits), top), -np.inf, np.float32)
        ids = np.full((len(hits), top), -1, np.int64)
        for row, found in enumerate(hits):
            ids[row, : len(found)] = [h["corpus_id"] for h in found]
            scores[row, : len(found)] = [h["score"] for h in found]
        return scores, ids

    def bytes_per_vector(self) -> float:
        return (self.corpus.indices().nbytes + self.corpus.values().nbytes) / self.corpus.shape[0]


class QdrantLocalPeer:
    """csrv2.index.qdrant.QdrantSparse on Qdrant's local in-process mode (QdrantClient(":memory:")): the same helper
    code a Qdrant server takes. Local mode is pure Python and scores every stored point per query (O(N) per query,
    no inverted index), so it is timed with the slow budget and is not a default method. Build = create + upsert.
    One request per query (exact_ties=False): the time is Qdrant's, not that of completing tie groups."""

    name = "qdrant_local"
    ties_by_lower_id, zero_scores = False, False  # Qdrant picks among ties at the cut and returns candidates only

    def __init__(self, codes: SparseCodes):
        from qdrant_client import QdrantClient

        self.store = QdrantSparse(QdrantClient(":memory:"), "bench")
        self.store.create(codes.dim)
        self.store.upsert(codes, batch=4096)
        self.nnz = int((codes.values != 0).sum())

    def prepare(self, codes: SparseCodes) -> SparseCodes:
        return codes

    def search(self, queries: SparseCodes, top: int) -> Result:
        scores, ids = self.store.search(queries, top=top)
        return scores.numpy(), ids.numpy()

    def bytes_per_vector(self) -> float:
        """What a Qdrant server stores at least: a u32 latent and a f32 value per non-zero (its inverted index, ids
        and local mode's Python objects come on top)."""
        return 8.0 * self.nnz / len(self.store)


class FaissFlatPeer:
    """faiss.IndexFlatIP over dense vectors (N, m): the 384-d backbone embeddings, or the first m dims of the
    Matryoshka head (the faiss_mrl_<m> peers)."""

    name = "faiss_flat"
    ties_by_lower_id, zero_scores = False, True

    def __init__(self, vectors: np.ndarray):
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.index = faiss.IndexFlatIP(vectors.shape[1])
        self.index.add(vectors)

    def prepare(self, vectors: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def search(self, queries: np.ndarray, top: int) -> Result:
        scores, ids = self.index.search(queries, top)
        return scores, ids.astype(np.int64, copy=False)

    def bytes_per_vector(self) -> float:
        return 4.0 * self.index.d


SPARSE_PEERS = {p.name: p for p in (ScipyPeer, STSparsePeer, TorchSparsePeer, QdrantLocalPeer)}  # name → class
NEEDS = {
    "st_sparse": "sentence_transformers",
    "faiss_flat": "faiss",
    "faiss_mrl": "faiss",
    "qdrant_local": "qdrant_client",
}


# -- measuring one database with every peer --------------------------------------------------------------------------
def measure_sparse(codes_db, codes_q, methods, budget: Budget, top: int, threads: int, save_dir: Path | None) -> dict:
    """SparseIndex and every sparse peer in `methods` on one database (N, k) and its queries (Q, k): {method: record}.
    Each peer's top scores are compared with SparseIndex's (itself equal to brute force). threads: 0 = all cores."""
    build, ix = timed(lambda: SparseIndexPeer(codes_db, threads or None))
    ix.search(codes_q[:16], top)  # warm-up: starts numba's thread pool
    n_single, n_batch = budget["sparse_index"]
    record, times, (ref_scores, _) = measure_search(ix, codes_q, n_single, n_batch, top)
    # Cost model: latency ≈ fixed + per_posting · postings touched (least squares on the faster 90 % of queries).
    touched = ix.index.postings_touched(codes_q[:n_single]).astype(np.float64)  # (n_single,)
    keep = times <= np.quantile(times, 0.9)
    slope, fixed = np.polyfit(touched[keep], times[keep], 1)
    out = {"sparse_index": {"build_s": build, **record, "fit_fixed_us": float(fixed * 1e6)}}
    out["sparse_index"].update(
        fit_ns_per_posting=float(slope * 1e9),
        postings_touched_mean=float(touched.mean()),
        postings_touched_median=float(np.median(touched)),
        skew=measure.skew_stats(ix.index),
    )
    if save_dir is not None:
        out["sparse_index"].update(measure.save_load_times(ix.index, codes_db[:100], codes_q[:1], save_dir, top))
    for name, cls in SPARSE_PEERS.items():
        if name in methods:
            build, peer = timed(lambda cls=cls: cls(codes_db))
            record, _, (scores, _) = measure_search(peer, codes_q, *budget[name], top)
            out[name] = {"build_s": build, **record, "same_scores_as_exact": same_scores(scores, ref_scores)}
            del peer  # one peer's structures at a time (torch's dense (Q, N) products are large at N = 1M)
    return out


def measure_dense(vectors: np.ndarray, queries: np.ndarray, budget: tuple[int, int], top: int) -> dict:
    """faiss IndexFlatIP over vectors (N, m) with queries (Q, m); its top scores are compared with DenseIndex's."""
    build, peer = timed(lambda: FaissFlatPeer(vectors))
    record, _, (scores, _) = measure_search(peer, queries, *budget, top)
    ref_scores, _ = DenseIndex(vectors).search(queries[: budget[1]], top)
    return {"build_s": build, **record, "same_scores_as_exact": same_scores(scores, ref_scores)}


# -- sentence-transformers' own paths: embedding, and CSR training ----------------------------------------------------
class STEmbedder:
    """SentenceTransformer.encode on the CPU, the benchmark's embedding path before csrv2.backbone.embeddings: compared with
    the library's TextEncoder (speed, and max |Δ| per coordinate). Loading happens here, outside any timing."""

    def __init__(self, folder: str | Path):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(folder), device="cpu")

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """texts (N,) → (N, d) float32 unit rows."""
        out = self.model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(out, dtype=np.float32)


def st_training_throughput(
    folder: str | Path,
    texts: Sequence[str],
    labels: np.ndarray,
    hidden: int,
    lr: float,
    batch_size: int,
    steps: int,
    seed: int,
    k: int = 8,
) -> dict:
    """Pairs/s of sentence-transformers' CSR training of the same head (h = hidden) on the same texts.

    SparseEncoder(Transformer → mean Pooling → SparseAutoEncoder) with CSRLoss (reconstruction + AuxK + in-batch
    InfoNCE on (anchor, same-label positive) pairs), backbone frozen so only the head learns, as in csrv2. It still
    runs the backbone on every pair of every step: it has no embedding cache. Times `steps` Adam steps of
    batch_size pairs after one warm-up step. texts (T,), labels (T,): a label shared by ≥ 2 texts makes pairs.
    """
    try:  # sentence-transformers ≥ 6; `sentence_transformers.models` before (deprecated there)
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:
        from sentence_transformers.models import Pooling, Transformer
    from sentence_transformers.sparse_encoder import SparseEncoder
    from sentence_transformers.sparse_encoder.losses import CSRLoss
    from sentence_transformers.sparse_encoder.modules import SparseAutoEncoder

    transformer = Transformer(str(folder))
    # `get_word_embedding_dimension` is the older name (a FutureWarning in sentence-transformers 6)
    dim = getattr(transformer, "get_embedding_dimension", transformer.get_word_embedding_dimension)()
    head = SparseAutoEncoder(dim, hidden, k=k, k_aux=256)
    model = SparseEncoder(modules=[transformer, Pooling(dim, "mean"), head], device="cpu")
    transformer.requires_grad_(False)
    loss_fn = CSRLoss(model)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    by_label: dict[int, list[int]] = {}
    for i, label in enumerate(labels.tolist()):
        by_label.setdefault(label, []).append(i)
    anchors_pool = [i for i in range(len(texts)) if len(by_label[int(labels[i])]) > 1]

    def step() -> None:
        anchors = rng.choice(anchors_pool, batch_size, replace=False)
        positives = [int(rng.choice([j for j in by_label[int(labels[i])] if j != i])) for i in anchors]
        prep = getattr(model, "preprocess", model.tokenize)  # `tokenize` is deprecated in sentence-transformers 6
        features = [prep([texts[i] for i in anchors]), prep([texts[j] for j in positives])]
        total = sum(loss_fn(features, None).values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()

    model.train()
    step()
    seconds, _ = timed(lambda: [step() for _ in range(steps)])
    return {
        "steps": steps,
        "batch_pairs": batch_size,
        "seconds": seconds,
        "samples_per_s": steps * batch_size / seconds,
    }
