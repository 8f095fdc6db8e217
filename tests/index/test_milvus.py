"""csrv2.index.milvus.MilvusSparse against the Milvus engine itself: milvus-lite 2.5 (the engine's native binary,
started from its wheel by the test on a local file): SparseIndex's answers on 10k real codes, then the conventions
(int and string ids, payload filters, delete, ties, padding, refusals) on small random codes, and the corpus index's
milvus backend."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from csrv2.head.codes import SparseCodes
from csrv2.index.corpus import CorpusIndex, build_corpus_index
from csrv2.index.milvus import MilvusSparse, filter_expression
from csrv2.index.sparse_index import SparseIndex
from tests.index.helpers import N_QUERIES, N_TWICE, codes_of, random_codes
from tests.index.test_corpus import TinyModel, corpus_records, write_jsonl

pymilvus = pytest.importorskip(
    "pymilvus", reason="needs pymilvus 2.5 and milvus-lite 2.5 (pip install 'csrv2[milvus]')"
)
pytest.importorskip("milvus_lite", reason="needs milvus-lite 2.5, the engine's wheel (pip install 'csrv2[milvus]')")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """One milvus-lite engine for the module (starting one takes ~1 s), on a file in a fresh folder."""
    out = pymilvus.MilvusClient(str(tmp_path_factory.mktemp("milvus") / "test.db"))
    yield out
    out.close()


_names = iter(range(10**6))


def store(client, dim: int, **options) -> MilvusSparse:
    out = MilvusSparse(client, f"c{next(_names)}")
    out.create(dim, **options)
    return out


# -- real codes: SparseIndex's answers -----------------------------------------------------------------------------------
@pytest.mark.parametrize("index_type", ["SPARSE_INVERTED_INDEX", "SPARSE_WAND"])
@pytest.mark.parametrize("k", [2, 8])
def test_milvus_equals_sparse_index_on_real_codes(client, stackoverflow_embeddings, k, index_type):
    """Top-10 over 10.5k real codes (500 stored twice: exact ties): with exact_ties the ids are SparseIndex's and the
    scores equal to float32 rounding, wherever Milvus has 10 documents sharing a latent (else it pads)."""
    from csrv2.head.sparse_head import SparseHead

    torch.manual_seed(k)
    head = SparseHead(384, 1536, k)
    with torch.no_grad():
        codes = head.encode(stackoverflow_embeddings, k=k).normalized()
    db = SparseCodes.cat([codes[N_QUERIES:], codes[N_QUERIES : N_QUERIES + N_TWICE]])
    queries = SparseCodes.cat([codes[:N_QUERIES], db[:6]])
    milvus = store(client, 1536, index_type=index_type)
    milvus.upsert(db, batch=4096)
    assert len(milvus) == len(db)
    ref_scores, ref_ids = SparseIndex.build(db).search(queries, top=10)
    scores, ids = milvus.search(queries, top=10, exact_ties=True)
    assert scores.dtype == torch.float32 and ids.dtype == torch.int64 and ids.shape == (len(queries), 10)
    found = ids >= 0
    assert found[:, 0].all() and (ref_scores[~found] == 0).all() and torch.isneginf(scores[~found]).all()
    assert torch.equal(ids[found], ref_ids[found])
    torch.testing.assert_close(scores[found], ref_scores[found], rtol=1e-6, atol=1e-6)
    milvus.drop()


# -- conventions on small random codes -----------------------------------------------------------------------------------
def test_string_ids_payload_filters_and_delete(client):
    rng = np.random.default_rng(0)
    db = random_codes(rng, 200, 48, 4)
    keys = [f"doc-{i:03d}" for i in range(200)]
    lang = ["fr" if i % 4 == 0 else "en" for i in range(200)]
    milvus = store(client, 48, id_type="str")
    milvus.upsert(db, ids=keys, payloads=[{"lang": x, "year": 2000 + i % 3} for i, x in enumerate(lang)])
    assert len(milvus) == 200 and milvus.payloads(["doc-004", "nope"]) == [{"lang": "fr", "year": 2001}, None]
    queries = random_codes(rng, 12, 48, 4)
    fr = np.flatnonzero(np.array(lang) == "fr")
    ref_s, ref_rows = SparseIndex.build(db[torch.from_numpy(fr)]).search(queries, top=10)
    for condition in ({"lang": "fr"}, 'lang == "fr"'):
        scores, ids = milvus.search(queries, top=10, filter=condition, exact_ties=True)
        assert isinstance(scores, np.ndarray) and ids.dtype == object  # string ids: numpy, None pads
        found = ids != None  # noqa: E711 (elementwise)
        assert found.any(1).all()
        expected = np.array([[keys[fr[r]] for r in row] for row in ref_rows.numpy()], object)
        assert (ids[found] == expected[found]).all()
        np.testing.assert_allclose(scores[found], ref_s.numpy()[found], rtol=1e-6, atol=1e-6)
    _, ids = milvus.search(queries, top=30, filter='lang == "fr" and year == 2001')
    assert {i for i in ids.ravel() if i is not None} <= {keys[i] for i in fr if i % 3 == 1}
    milvus.delete(["doc-000", "doc-001", "absent"])
    assert len(milvus) == 198
    _, ids = milvus.search(db[:2], top=3)
    assert "doc-000" not in ids[0] and "doc-001" not in ids[1]
    with pytest.raises(ValueError, match="needs ids"):
        milvus.upsert(db[:1])


def test_int_ids_ties_padding_and_replacement(client):
    rng = np.random.default_rng(1)
    base = random_codes(rng, 100, 32, 4)
    db = SparseCodes.cat([base, SparseCodes(base.indices[:1].repeat(30, 1), base.values[:1].repeat(30, 1), 32)])
    ids = np.arange(1000, 1000 - len(db), -1)  # descending: the first-written copy has the highest id
    milvus = store(client, 32)
    np.testing.assert_array_equal(milvus.upsert(db, ids=ids, batch=50), ids)
    scores, got = milvus.search(base[:1].to_scipy(), top=5, exact_ties=True)
    assert isinstance(got, np.ndarray) and got.dtype == np.int64
    np.testing.assert_array_equal(got[0], np.sort(ids[-30:])[:5])  # the five lowest ids among the 30 copies
    np.testing.assert_allclose(scores[0], 1.0, rtol=1e-6)
    # padding: a query sharing no latent, one with only zero values, N < top
    small = store(client, 8)
    small.upsert(codes_of([[0, 1], [1, 2], [2, 3]], [[1.0, 0.5], [0.5, 0.25], [1.0, 0.0]], 8))
    q = codes_of([[1, 0], [3, 4], [5, 6]], [[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]], 8)
    scores, got = small.search(q, top=4, exact_ties=True)
    assert got.tolist() == [[0, 1, -1, -1], [-1] * 4, [-1] * 4]
    assert torch.equal(scores[0, :2], torch.tensor([0.5, 0.5])) and torch.isneginf(scores[0, 2:]).all()
    # upsert replaces: the same id with another code
    small.upsert(codes_of([[3, 4]], [[1.0, 0.0]], 8), ids=[1])
    assert len(small) == 3 and small.search(codes_of([[3]], [[1.0]], 8), top=1)[1].tolist() == [[1]]


def test_bad_input_is_refused(client):
    milvus = store(client, 8)
    good = codes_of([[0, 1], [2, 3]], [[1.0, 0.5], [0.5, 0.25]], 8)
    cases = [
        (lambda: milvus.upsert(codes_of([[0, 1], [2, 3]], [[1.0, 0.5], [np.nan, 1.0]], 8)), "row 1 holds NaN"),
        (lambda: milvus.upsert(codes_of([[0, 1], [4, 4]], [[1.0, 0.5], [1.0, 2.0]], 8)), "row 1 gives a latent twice"),
        (lambda: milvus.upsert(codes_of([[0, 1]], [[1.0, 1.0]], 9)), "dim 9"),
        (lambda: milvus.upsert(good, ids=[1, 1]), "id 1 is given twice"),
        (lambda: milvus.upsert(good, ids=[0, -3]), "row 1 has -3"),
        (lambda: milvus.upsert(good, ids=["a", "b"]), "integers"),
        (lambda: milvus.upsert(good, payloads=[{}]), "1 payloads for 2 rows"),
        (lambda: milvus.upsert(good, payloads=[{"id": 3}, {}]), "reserved key"),
        (lambda: milvus.search(good, top=0), "top"),
        (lambda: milvus.search(good, filter={"a b": 1}), "not a field name"),
        (lambda: milvus.create(8), "exists already"),
        (lambda: MilvusSparse(client, "u").create(8, id_type="uuid"), "id_type"),
        (lambda: MilvusSparse(client, "u").create(8, index_type="HNSW"), "index_type"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    assert len(milvus) == 0
    assert filter_expression({"lang": 'e"n', "n": 3, "ok": True}) == 'lang == "e\\"n" and n == 3 and ok == true'


def test_the_corpus_index_on_milvus_answers_as_on_sparse_index(tmp_path):
    """`csrv2 index build --backend milvus`: the codes in a milvus-lite file inside the folder; search gives the
    SparseIndex backend's hits (ids, scores, texts)."""
    model = TinyModel()
    corpus = write_jsonl(tmp_path / "c.jsonl", corpus_records(60))
    a = build_corpus_index(model, corpus, tmp_path / "a", k=8, chunk_texts=16, progress=False, log=print)
    b = build_corpus_index(model, corpus, tmp_path / "b", k=8, backend="milvus", progress=False, log=print)
    assert (b / "milvus.db").is_file() and json.loads((b / "corpus_index.json").read_text())["backend"] == "milvus"
    queries = ["text number 7", "word word word"]
    opened = CorpusIndex.open(b)
    hits_a, hits_b = CorpusIndex.open(a).search(model, queries), opened.search(model, queries)
    opened.close()  # stops the engine this process started on b/milvus.db (before the folder is replaced)
    for x, y in zip(hits_a, hits_b):
        assert [h["id"] for h in x] == [h["id"] for h in y] and [h["text"] for h in x] == [h["text"] for h in y]
        np.testing.assert_allclose([h["score"] for h in x], [h["score"] for h in y], rtol=1e-6, atol=1e-6)
    with pytest.raises(FileExistsError, match="exists already"):
        build_corpus_index(model, corpus, tmp_path / "b", k=8, backend="milvus", progress=False)
    build_corpus_index(model, corpus, tmp_path / "b", k=8, backend="milvus", overwrite=True, progress=False, log=print)
    opened = CorpusIndex.open(b)
    assert len(opened.search(model, queries[:1])[0]) == 10
    opened.close()
