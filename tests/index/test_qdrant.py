"""csrv2.index.qdrant.QdrantSparse in Qdrant's local in-process mode: the same answers as SparseIndex on 10k real codes,
and the conventions of upsert / search (padding, ids, payloads, ties, refusals) on small random codes."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
import torch

from csrv2.head.codes import SparseCodes
from csrv2.head.sparse_head import SparseHead
from csrv2.index.qdrant import QdrantSparse, to_sparse_vectors
from csrv2.index.sparse_index import SparseIndex
from tests.index.helpers import N_QUERIES, N_TWICE, codes_of, random_codes

qdrant_client = pytest.importorskip("qdrant_client", reason="needs qdrant-client (pip install 'csrv2[qdrant]')")


def store(dim: int, name: str = "t") -> QdrantSparse:
    out = QdrantSparse(qdrant_client.QdrantClient(":memory:"), name)
    out.create(dim)
    return out


# -- real codes: exactly SparseIndex's answers ------------------------------------------------------------------------
@pytest.mark.parametrize("k", [2, 8])
def test_qdrant_equals_sparse_index_on_real_codes(stackoverflow_embeddings, k):
    """Top-10 of 10k real codes (a random SparseHead over MiniLM embeddings; 500 rows stored twice add exact ties):
    Qdrant's scores equal SparseIndex's to float32 rounding and each returned id has the score it is listed with
    (ids may differ only inside a tie group at the cut); with exact_ties=True the ids are SparseIndex's exactly.
    Where Qdrant pads (fewer than 10 documents share a latent), SparseIndex lists score-0 documents."""
    torch.manual_seed(k)
    head = SparseHead(384, 1536, k)
    with torch.no_grad():
        codes = head.encode(stackoverflow_embeddings, k=k).normalized()
    db = SparseCodes.cat([codes[N_QUERIES:], codes[N_QUERIES : N_QUERIES + N_TWICE]])  # (10,500, k)
    queries = SparseCodes.cat([codes[:N_QUERIES], db[:6]])  # held-out texts, and 6 rows the database holds twice
    qdrant = store(1536)
    qdrant.upsert(db, batch=4096)  # three requests
    assert len(qdrant) == len(db)
    ref_scores, ref_ids = SparseIndex.build(db).search(queries, top=10)
    full = queries.to_scipy().astype(np.float64) @ db.to_scipy().astype(np.float64).T  # (Q, N) brute force
    full = torch.from_numpy(full.toarray().astype(np.float32))
    scores, ids = qdrant.search(queries, top=10)
    assert scores.dtype == torch.float32 and ids.dtype == torch.int64 and ids.shape == (len(queries), 10)
    found = ids >= 0
    torch.testing.assert_close(scores[found], ref_scores[found], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(full.gather(1, ids.clamp(min=0))[found], scores[found], rtol=1e-6, atol=1e-7)
    assert all(len(set(row) - {-1}) == int(n) for row, n in zip(ids.tolist(), found.sum(1)))  # no id twice
    assert (ref_scores[~found] == 0).all() and torch.isneginf(scores[~found]).all()
    assert found[:, 0].all()  # every query shares a latent with some document
    some = slice(N_QUERIES - 4, None)  # 4 held-out queries and the 6 stored rows (a local-mode scan costs ~0.1 s)
    exact_scores, exact_ids = qdrant.search(queries[some], top=10, exact_ties=True)
    found = exact_ids >= 0
    assert torch.equal(exact_ids[found], ref_ids[some][found]) and torch.equal(exact_scores, scores[some])
    # a stored row finds itself (id < 6: at most 5 lower ids can tie with it) in a tie at the top, with its copy or
    # another title of the same code (at k = 2 different titles share codes; float32 sums may differ in the last bit)
    assert (exact_ids[4:] == torch.arange(6)[:, None]).any(1).all()
    torch.testing.assert_close(scores[N_QUERIES:, :2], torch.ones(6, 2))


# -- conventions on small random codes --------------------------------------------------------------------------------
def test_search_equals_brute_force_with_ties_beyond_the_first_request():
    """30 copies of one code tie at the cut for top 5: with exact_ties the lowest ids win, however the ids were
    assigned; scipy queries give numpy arrays, SparseCodes queries torch tensors."""
    rng = np.random.default_rng(0)
    base = random_codes(rng, 200, 32, 4)
    db = SparseCodes.cat([base, SparseCodes(base.indices[:1].repeat(30, 1), base.values[:1].repeat(30, 1), 32)])
    ids = np.arange(1000, 1000 - len(db), -1)  # descending: the first-written copy has the highest id
    qdrant = store(32)
    np.testing.assert_array_equal(qdrant.upsert(db, ids=ids, batch=64), ids)
    query = base[:1]
    scores, got = qdrant.search(query.to_scipy(), top=5, exact_ties=True)
    assert isinstance(scores, np.ndarray) and scores.dtype == np.float32 and got.dtype == np.int64
    np.testing.assert_array_equal(got[0], np.sort(ids[-30:])[:5])  # the five lowest ids among the 30 copies
    plain = qdrant.search(query.to_scipy(), top=5)[1][0]  # Qdrant's own pick among the ties, listed by id
    assert set(plain) <= set(ids[-30:]) and len(set(plain)) == 5 and (np.diff(plain) > 0).all()
    dense = (query.to_dense().double() @ db.to_dense().double().T).float().numpy()[0]
    np.testing.assert_allclose(scores[0], np.sort(dense)[::-1][:5], rtol=1e-6)
    many = random_codes(rng, 20, 32, 4)
    s, i = qdrant.search(many, top=10)
    ref_s, _ = SparseIndex.build(db).search(many, top=10)
    real = (i >= 0).numpy()
    torch.testing.assert_close(s[real], ref_s[real])  # ids differ inside ties: lower *point id* here, lower row there
    full = (many.to_dense().double() @ db.to_dense().double().T).float().numpy()  # (20, N) brute force
    rows = np.where(real, 1000 - i.numpy(), 0)  # point id → row
    np.testing.assert_allclose(np.take_along_axis(full, rows, 1)[real], s.numpy()[real], rtol=1e-6)


def test_padding_when_fewer_documents_share_a_latent():
    """N < top pads with (-inf, -1); so does a query sharing no latent, or one whose values are all zero."""
    db = codes_of([[0, 1], [1, 2], [2, 3]], [[1.0, 0.5], [0.5, 0.25], [1.0, 0.0]], 8)  # row 2: latent 3 inactive
    qdrant = store(8)
    qdrant.upsert(db)
    q = codes_of([[1, 0], [3, 4], [5, 6]], [[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]], 8)
    scores, ids = qdrant.search(q, top=4)
    assert torch.equal(ids[0], torch.tensor([0, 1, -1, -1]))  # latent 1: docs 0 (0.5) and 1 (0.5): tie → lower id
    assert torch.equal(scores[0, :2], torch.tensor([0.5, 0.5])) and torch.isneginf(scores[0, 2:]).all()
    assert (ids[1:] == -1).all() and torch.isneginf(scores[1:]).all()  # latent 3 was a zero slot: not stored
    stored = qdrant.client.retrieve("t", ids=[2], with_vectors=True)[0].vector["csrv2"]
    assert (stored.indices, stored.values) == ([2], [1.0])  # zeros dropped


def test_ids_and_payloads_round_trip():
    rng = np.random.default_rng(1)
    db = random_codes(rng, 12, 16, 3)
    qdrant = store(16)
    ids = 7 * np.arange(12) + 100
    qdrant.upsert(db, ids=ids, payloads=[{"row": i, "tag": f"t{i}"} for i in range(12)])
    assert qdrant.payloads(ids[[3, 0]]) == [{"row": 3, "tag": "t3"}, {"row": 0, "tag": "t0"}]
    assert qdrant.payloads([5]) == [None]  # no such point
    _, found = qdrant.search(db[:4], top=1)
    assert torch.equal(found[:, 0], torch.from_numpy(ids[:4]))  # each code finds itself under its own id
    again = QdrantSparse(qdrant.client, "t")  # an existing collection: dim comes from the codes
    assert torch.equal(again.search(db[:4], top=1)[1], found) and again.dim == 16
    assert np.array_equal(again.upsert(db[:2]), [0, 1]) and len(again) == 14  # default ids: row numbers


def test_bad_input_is_refused_naming_what_is_wrong():
    qdrant = store(8)
    good = codes_of([[0, 1], [2, 3]], [[1.0, 0.5], [0.5, 0.25]], 8)
    cases = [
        (lambda: qdrant.upsert(codes_of([[0, 1], [2, 3]], [[1.0, 0.5], [np.nan, 1.0]], 8)), "row 1 holds NaN"),
        (lambda: qdrant.upsert(codes_of([[0, 1], [4, 4]], [[1.0, 0.5], [1.0, 2.0]], 8)), "row 1 gives a latent twice"),
        (lambda: qdrant.search(codes_of([[0, 1]], [[np.inf, 1.0]], 8)), "row 0 holds NaN or inf"),
        (lambda: qdrant.upsert(codes_of([[0, 1]], [[1.0, 1.0]], 9)), "dim 9"),
        (lambda: qdrant.upsert(good, ids=[1, 1]), "id 1 is given twice"),
        (lambda: qdrant.upsert(good, ids=[0, -3]), "row 1 has -3"),
        (lambda: qdrant.upsert(good, ids=[0.5, 1.5]), "integers"),
        (lambda: qdrant.upsert(good, ids=[0]), "2 integers"),
        (lambda: qdrant.upsert(good, payloads=[{}]), "1 payloads for 2 rows"),
        (lambda: qdrant.upsert(good, batch=0), "batch"),
        (lambda: qdrant.search(good, top=0), "top"),
        (lambda: qdrant.create(8), "exists already"),
        (lambda: QdrantSparse(qdrant.client, "u").create(0), "dim"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    assert len(qdrant) == 0  # nothing refused was written
    qdrant.upsert(codes_of([[0, 0], [1, 1]], [[1.0, 0.0], [0.0, 0.0]], 8))  # a repeated *inactive* slot is padding
    assert len(qdrant) == 2
    with pytest.raises(TypeError, match="SparseCodes or a scipy sparse"):
        qdrant.search(np.zeros((1, 8)))
    csr = scipy.sparse.csr_matrix(([1.0, 2.0], [1, 1], [0, 2]), shape=(1, 8))  # latent 1 stored twice
    with pytest.raises(ValueError, match="twice"):
        qdrant.search(csr)


# -- what users asked for: payload filters, a csrv2 vector beside a dense one, the converter, delete ------------------
def test_a_payload_filter_equals_sparse_index_over_the_matching_points():
    rng = np.random.default_rng(2)
    db = random_codes(rng, 300, 64, 4)
    lang = np.where(rng.random(300) < 0.3, "fr", "en")
    qdrant = store(64)
    qdrant.upsert(db, payloads=[{"lang": str(x), "year": 2000 + i % 3} for i, x in enumerate(lang)])
    queries = random_codes(rng, 15, 64, 4)
    fr = np.flatnonzero(lang == "fr")
    ref_s, ref_rows = SparseIndex.build(db[torch.from_numpy(fr)]).search(queries, top=10)
    for condition in (
        {"lang": "fr"},
        qdrant_client.models.Filter(
            must=[qdrant_client.models.FieldCondition(key="lang", match=qdrant_client.models.MatchValue(value="fr"))]
        ),
    ):
        scores, ids = qdrant.search(queries, top=10, filter=condition, exact_ties=True)
        found = ids >= 0
        assert found.any(1).all() and set(ids[found].tolist()) <= set(fr.tolist())
        torch.testing.assert_close(scores[found], ref_s[found], rtol=1e-6, atol=1e-7)
        assert torch.equal(ids[found], torch.from_numpy(fr)[ref_rows[found]])
    both = qdrant.search(queries, top=50, filter={"lang": "fr", "year": 2001})[1]
    assert set(both[both >= 0].tolist()) <= {int(i) for i in fr if i % 3 == 1}
    with pytest.raises(ValueError, match="year must equal a string, int or bool"):
        qdrant.search(queries, filter={"year": 2001.5})


def test_attach_a_csrv2_vector_beside_a_dense_one_for_hybrid_search():
    """An existing collection with a dense vector and payloads gains the csrv2 sparse vector; set_vectors fills it on
    the existing points; the dense vector and payloads stay, and sparse search equals SparseIndex."""
    models = qdrant_client.models
    client = qdrant_client.QdrantClient(":memory:")
    if not hasattr(client, "create_vector_name"):
        pytest.skip("needs qdrant-client ≥ 1.18 (create_vector_name)")
    rng = np.random.default_rng(3)
    n = 40
    dense = rng.normal(size=(n, 8)).astype(np.float32)
    client.create_collection(
        "docs", vectors_config={"dense": models.VectorParams(size=8, distance=models.Distance.DOT)}
    )
    client.upsert(
        "docs",
        points=[
            models.PointStruct(id=i, vector={"dense": dense[i].tolist()}, payload={"title": f"t{i}"}) for i in range(n)
        ],
    )
    store = QdrantSparse(client, "docs")
    store.attach(dim=32)
    with pytest.raises(ValueError, match="has a sparse vector 'csrv2' already"):
        store.attach(dim=32)
    with pytest.raises(ValueError, match="no collection 'nope'"):
        QdrantSparse(client, "nope").attach(dim=32)
    codes = random_codes(rng, n, 32, 3)
    store.set_vectors(codes, ids=np.arange(n))
    point = client.retrieve("docs", ids=[5], with_vectors=True, with_payload=True)[0]
    assert point.payload == {"title": "t5"} and np.allclose(point.vector["dense"], dense[5])
    assert point.vector["csrv2"] == to_sparse_vectors(codes[5:6])[0]
    queries = random_codes(rng, 6, 32, 3)
    ref_s, ref_i = SparseIndex.build(codes).search(queries, top=5)
    scores, ids = store.search(queries, top=5, exact_ties=True)
    found = ids >= 0
    assert torch.equal(ids[found], ref_i[found])
    torch.testing.assert_close(scores[found], ref_s[found], rtol=1e-6, atol=1e-7)
    # hybrid: both vectors fused by Qdrant (reciprocal rank fusion), the sparse one given in the converter's form
    fused = client.query_points(
        "docs",
        prefetch=[
            models.Prefetch(query=to_sparse_vectors(queries[:1])[0], using="csrv2", limit=10),
            models.Prefetch(query=dense[0].tolist(), using="dense", limit=10),
        ],
        query=models.FusionQuery(fusion=models.Fusion.RRF),
        limit=5,
    ).points
    assert len(fused) == 5


def test_to_sparse_vectors_and_delete():
    codes = codes_of([[3, 1, 2], [0, 5, 5]], [[0.5, 0.25, 0.0], [1.0, 0.0, 0.0]], 8)  # zeros dropped, latents sorted
    vectors = to_sparse_vectors(codes)
    assert [(v.indices, v.values) for v in vectors] == [([1, 3], [0.25, 0.5]), ([0], [1.0])]
    assert to_sparse_vectors(codes.to_scipy()) == vectors
    with pytest.raises(ValueError, match="row 0 holds NaN"):
        to_sparse_vectors(codes_of([[0]], [[np.nan]], 4))
    qdrant = store(8)
    qdrant.upsert(codes, ids=[10, 11])
    qdrant.delete([10, 99])
    assert len(qdrant) == 1 and qdrant.search(codes[:1], top=2)[1].tolist() == [[-1, -1]]


def test_the_corpus_index_on_qdrant_answers_as_on_sparse_index(tmp_path):
    """`csrv2 index build --backend qdrant`: the codes in a Qdrant local-mode folder inside the index folder."""
    from csrv2.index.corpus import CorpusIndex, build_corpus_index
    from tests.index.test_corpus import TinyModel, corpus_records, write_jsonl

    model = TinyModel()
    corpus = write_jsonl(tmp_path / "c.jsonl", corpus_records(60))
    a = build_corpus_index(model, corpus, tmp_path / "a", k=8, progress=False, log=print)
    b = build_corpus_index(model, corpus, tmp_path / "b", k=8, backend="qdrant", progress=False, log=print)
    assert (b / "qdrant").is_dir()
    queries = ["text number 7", "word word word"]
    opened = CorpusIndex.open(b)
    hits_a, hits_b = CorpusIndex.open(a).search(model, queries), opened.search(model, queries)
    opened.close()
    for x, y in zip(hits_a, hits_b):
        assert [h["id"] for h in x] == [h["id"] for h in y] and [h["text"] for h in x] == [h["text"] for h in y]
        np.testing.assert_allclose([h["score"] for h in x], [h["score"] for h in y], rtol=1e-6, atol=1e-6)
