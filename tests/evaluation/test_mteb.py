"""csrv2.evaluation.mteb.MtebEncoder run through mteb.evaluate offline, on tasks built from local files (no download).

What is checked: the vectors mteb receives are csrv2's own codes for the same texts (queries with the query prompt);
mteb's scores equal an independent computation on those codes (sklearn logistic regression as mteb configures it;
pytrec_eval on the full cosine matrix); sparse retrieval output scores as the dense one; `import mteb` from csrv2.evaluation.mteb
is the real package (no shadowing by the module's name).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict
from sklearn.linear_model import LogisticRegression

import csrv2
import csrv2.evaluation.mteb
from csrv2.config.task_spec import TaskSpec
from csrv2.data.catalog import get_task
from csrv2.evaluation.mteb import MtebEncoder, mteb_task
from csrv2.evaluation.scoring import cosine_matrix, pair_average_precision, sts_spearman

mteb = pytest.importorskip("mteb", reason="needs mteb (pip install csrv2[mteb])")
pytrec_eval = pytest.importorskip("pytrec_eval", reason="needs pytrec-eval-terrier (an mteb dependency)")

from mteb.abstasks.classification import AbsTaskClassification  # noqa: E402  (after the skip)
from mteb.abstasks.retrieval import AbsTaskRetrieval  # noqa: E402
from mteb.abstasks.task_metadata import TaskMetadata  # noqa: E402
from mteb.models.model_meta import ModelMeta  # noqa: E402
from mteb.models.models_protocols import EncoderProtocol  # noqa: E402

TINY_TEXTS = [f"{topic} story number {i}" for i in range(24) for topic in ("cats and dogs", "stocks and bonds")]
META = {
    "description": "A local task for csrv2's tests.",
    "reference": "https://example.org/csrv2",
    "dataset": {"path": "local/csrv2-test", "revision": "local"},
    "category": "t2t",
    "eval_splits": ["test"],
    "eval_langs": ["eng-Latn"],
    "date": ("2024-01-01", "2024-01-02"),
    "dialect": ["Written"],
    "domains": [],
    "task_subtypes": [],
    "license": "cc-by-4.0",
    "annotations_creators": "derived",
    "modalities": ["text"],
    "sample_creation": "found",
    "bibtex_citation": "",
}


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


class Recorder(MtebEncoder):
    """An MtebEncoder that keeps (texts, prompt kind, output) of every encode call."""

    def encode(self, inputs, **kwargs):
        texts = [t for batch in inputs for t in batch["text"]]
        out = super().encode([{"text": texts}], **kwargs)
        kind = "query" if str(getattr(kwargs.get("prompt_type"), "value", None)) == "query" else "document"
        self.calls.append((texts, kind, out))
        return out


def recorder(model, k, **kw):
    enc = Recorder(model, k, **kw)
    enc.calls = []
    return enc


def dense(x):
    return x.to_dense().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


@pytest.fixture
def classification_task(tmp_path):
    rows = [{"text": t, "label": i % 2} for i, t in enumerate(TINY_TEXTS)]
    train, test = write_jsonl(tmp_path / "train.jsonl", rows[:32]), write_jsonl(tmp_path / "test.jsonl", rows[32:])

    class LocalClassification(AbsTaskClassification):
        metadata = TaskMetadata(type="Classification", name="Csrv2LocalClassification", main_score="accuracy", **META)
        samples_per_label = 1000  # ≥ every label's count: each experiment fits on the whole train split
        n_experiments = 1

        def load_data(self, num_proc=None, **kwargs):
            self.dataset = DatasetDict(
                {"train": Dataset.from_list(read_jsonl(train)), "test": Dataset.from_list(read_jsonl(test))}
            )
            self.data_loaded = True

    return LocalClassification()


QUERIES = ["cats", "dogs and cats", "bonds", "the stock market", "a story"]
CORPUS = TINY_TEXTS[:20]


@pytest.fixture
def retrieval_task(tmp_path):
    rng = np.random.default_rng(0)
    qrels = {}
    for q, text in enumerate(QUERIES):
        topic = 0 if ("cat" in text or "dog" in text) else 1
        docs = [d for d in range(len(CORPUS)) if d % 2 == topic] if q < 4 else list(range(len(CORPUS)))
        qrels[f"q{q}"] = {f"d{d}": int(rng.integers(1, 4)) for d in rng.choice(docs, size=4, replace=False)}
    write_jsonl(tmp_path / "queries.jsonl", [{"id": f"q{i}", "text": t} for i, t in enumerate(QUERIES)])
    write_jsonl(tmp_path / "corpus.jsonl", [{"id": f"d{i}", "text": t} for i, t in enumerate(CORPUS)])
    (tmp_path / "qrels.json").write_text(json.dumps(qrels))

    class LocalRetrieval(AbsTaskRetrieval):
        metadata = TaskMetadata(type="Retrieval", name="Csrv2LocalRetrieval", main_score="ndcg_at_10", **META)

        def load_data(self, num_proc=None, **kwargs):
            split = {
                "queries": Dataset.from_list(read_jsonl(tmp_path / "queries.jsonl")),
                "corpus": Dataset.from_list(read_jsonl(tmp_path / "corpus.jsonl")),
                "relevant_docs": json.loads((tmp_path / "qrels.json").read_text()),
                "top_ranked": None,
            }
            self.dataset = {"default": {"test": split}}
            self.data_loaded = True

    return LocalRetrieval(), qrels


def scores_of(result):
    (task_result,) = result.task_results
    return task_result.scores["test"][0]


def test_the_module_name_does_not_shadow_mteb(tiny_run):
    assert not mteb.__file__.startswith(str(Path(csrv2.__file__).parent))
    encoder = MtebEncoder(csrv2.load(tiny_run, device="cpu"), k=2)
    assert isinstance(encoder, EncoderProtocol)
    meta = encoder.mteb_model_meta
    assert isinstance(meta, ModelMeta) and meta.embed_dim == 128 and meta.name == "csrv2/all-MiniLM-L6-v2-h128-k2"


def test_classification_through_mteb_sees_csrv2_codes(tiny_run, classification_task):
    model = csrv2.load(tiny_run, device="cpu")
    encoder = recorder(model, 2)
    result = mteb.evaluate(encoder, classification_task, cache=None, show_progress_bar=False)
    assert len(encoder.calls) == 2  # train rows, test rows
    for texts, kind, out in encoder.calls:
        assert kind == "document" and out.shape == (len(texts), 128)
        np.testing.assert_array_equal(out, model.encode(texts, 2).to_dense().numpy())
        assert ((out != 0).sum(axis=1) <= 2).all()
    # mteb's classifier: LogisticRegression(max_iter=100) with random_state = the task seed (42), on raw vectors
    (train_texts, _, train_x), (test_texts, _, test_x) = encoder.calls
    label = {r: i % 2 for i, r in enumerate(TINY_TEXTS)}
    clf = LogisticRegression(max_iter=100, random_state=42).fit(train_x, [label[t] for t in train_texts])
    expected = float((clf.predict(test_x) == np.array([label[t] for t in test_texts])).mean())
    assert scores_of(result)["accuracy"] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("sparse", [False, True])
def test_retrieval_through_mteb_equals_pytrec_eval_on_csrv2_codes(tiny_run, retrieval_task, sparse):
    task, qrels = retrieval_task
    model = csrv2.load(tiny_run, device="cpu")
    encoder = recorder(model, 4, sparse=sparse)
    scores = scores_of(mteb.evaluate(encoder, task, cache=None, show_progress_bar=False))
    (q_texts, q_kind, q_out), (d_texts, d_kind, d_out) = encoder.calls
    assert (q_kind, d_kind) == ("query", "document") and q_texts == QUERIES and d_texts == CORPUS
    assert isinstance(q_out, torch.Tensor) and q_out.is_sparse if sparse else isinstance(q_out, np.ndarray)
    np.testing.assert_array_equal(dense(q_out), model.encode(QUERIES, 4, kind="query").to_dense().numpy())
    np.testing.assert_array_equal(dense(d_out), model.encode(CORPUS, 4).to_dense().numpy())
    # every document is in mteb's top 1000 here, so pytrec_eval on the whole cosine matrix is what mteb must report
    s = cosine_matrix(model.encode(QUERIES, 4, kind="query").to_scipy(), model.encode(CORPUS, 4).to_scipy())
    run = {f"q{q}": {f"d{d}": float(s[q, d]) for d in range(len(CORPUS))} for q in range(len(QUERIES))}
    ev = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "map_cut.1000"}).evaluate(run)
    assert scores["ndcg_at_10"] == pytest.approx(np.mean([v["ndcg_cut_10"] for v in ev.values()]), abs=1e-5)
    assert scores["map_at_1000"] == pytest.approx(np.mean([v["map_cut_1000"] for v in ev.values()]), abs=1e-5)


def test_encoder_options_and_similarity(tiny_run):
    model = csrv2.load(tiny_run, device="cpu")
    texts = TINY_TEXTS[:6]
    unit = MtebEncoder(model, 3, normalize=True).encode(texts)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-6)
    raw = MtebEncoder(model).encode(texts)  # k=None: the head's trained k (4)
    assert ((raw != 0).sum(axis=1) <= 4).all() and ((raw != 0).sum(axis=1) > 2).any()
    enc = MtebEncoder(model, 3)
    a, b = enc.encode(texts[:3]), enc.encode(texts[3:])
    by_hand = (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T
    np.testing.assert_allclose(enc.similarity(a, b).numpy(), by_hand, atol=1e-6)
    np.testing.assert_allclose(enc.similarity(torch.from_numpy(a).to_sparse(), b).numpy(), by_hand, atol=1e-6)
    np.testing.assert_allclose(enc.similarity_pairwise(a, b).numpy(), np.diag(by_hand), atol=1e-6)
    with pytest.raises(ValueError, match="k=0"):
        MtebEncoder(model, 0)


@pytest.fixture
def local_specs(tmp_path):
    """Tasks defined as in a config's data.tasks, from files on disk: sts, pair classification, retrieval."""
    rng = np.random.default_rng(0)
    pairs = [(TINY_TEXTS[i], TINY_TEXTS[j]) for i, j in rng.integers(0, len(TINY_TEXTS), size=(60, 2))]
    same = [("cats" in a) == ("cats" in b) for a, b in pairs]
    sts = ["text,text2,score"] + [f"{a},{b},{3 * s + rng.integers(0, 3)}" for (a, b), s in zip(pairs, same)]
    (tmp_path / "sts.csv").write_text("\n".join(sts) + "\n")
    pc = ["text,text2,label"] + [f"{a},{b},{int(s)}" for (a, b), s in zip(pairs, same)]
    (tmp_path / "pairs.csv").write_text("\n".join(pc) + "\n")
    folder = tmp_path / "ret"
    folder.mkdir()
    write_jsonl(folder / "corpus.jsonl", [{"id": f"d{i}", "text": t} for i, t in enumerate(CORPUS)])
    queries = [f"{topic} {i}" for i in range(8) for topic in ("cats", "bonds")]
    write_jsonl(folder / "queries.jsonl", [{"id": f"q{i}", "text": t} for i, t in enumerate(queries)])
    rows = [(f"q{q}", f"d{d}", 1) for q in range(len(queries)) for d in range(len(CORPUS)) if d % 2 == (q + 1) % 2]
    (folder / "qrels.tsv").write_text("query_id\tdoc_id\trelevance\n" + "".join(f"{a}\t{b}\t{c}\n" for a, b, c in rows))
    return [
        TaskSpec(name="tiny-sts", type="sts", path=str(tmp_path / "sts.csv")),
        TaskSpec(name="tiny-pairs", type="pair_classification", path=str(tmp_path / "pairs.csv")),
        TaskSpec(name="tiny-ret", type="retrieval", path=str(folder)),
    ]


def test_csrv2_tasks_run_through_mteb_and_its_similarity_scores_equal_csrv2s(tiny_run, local_specs):
    """mteb_task: a csrv2 task as an MTEB task over the split csrv2 scores. The scores MTEB computes with the encoder's
    similarity equal csrv2's own on the same codes (sts Spearman, pair AP); retrieval runs on the same queries."""
    model = csrv2.load(tiny_run, device="cpu")
    result = mteb.evaluate(MtebEncoder(model, k=2), [mteb_task(s.name, local_specs) for s in local_specs], cache=None)
    scores = {r.task_name: r.scores["test"][0] for r in result.task_results}
    assert set(scores) == {"csrv2-tiny-sts", "csrv2-tiny-pairs", "csrv2-tiny-ret"}
    codes = {}
    for spec in local_specs:
        task = get_task(spec.name, local_specs)
        split = task.splits["test"]
        if task.type == "retrieval":  # tied scores rank by id in trec_eval, by corpus row in csrv2 (reproduction.md)
            assert 0 <= scores["csrv2-tiny-ret"]["ndcg_at_10"] <= 1 and len(split.query_ids) == 8
            continue
        codes[spec.name] = (model.encode(split.texts, 2).to_scipy(), model.encode(split.texts2, 2).to_scipy())
        if task.type == "sts":
            assert scores["csrv2-tiny-sts"]["spearman"] == pytest.approx(sts_spearman(*codes[spec.name], split.scores))
        else:
            ap = pair_average_precision(*codes[spec.name], split.labels)
            assert scores["csrv2-tiny-pairs"]["similarity_ap"] == pytest.approx(ap)
    with pytest.raises(ValueError, match="mteb_task builds"):
        mteb_task("digits")


def test_the_mteb_snippet_of_docs_hub_runs_offline_on_a_local_task(tiny_run, shared_or_pypi_lee):
    """docs/hub.md's MTEB snippet, as written (the run folder → tiny_run): MTEB scores a csrv2 catalog task (Lee, from
    a PyPI wheel) with no download from the hub; its `spearman` is csrv2's score of the same codes."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "hub.md").read_text()
    (snippet,) = [b.split("```", 1)[0] for b in text.split("```python\n")[1:] if "mteb_task(" in b]
    scope: dict = {}
    exec(snippet.replace('"runs/quickstart"', repr(str(tiny_run))), scope)
    scores = scope["scores"]
    lee = get_task("lee").splits["test"]
    docs = sorted(set(lee.texts) | set(lee.texts2))  # 50 documents in 1,225 pairs: each encoded once here
    codes = scope["encoder"].model.encode(docs, 2).to_scipy()
    row = {doc: i for i, doc in enumerate(docs)}
    x1, x2 = codes[[row[t] for t in lee.texts]], codes[[row[t] for t in lee.texts2]]
    ours = sts_spearman(x1, x2, lee.scores)
    assert scores["spearman"] == pytest.approx(ours) and scores["main_score"] == scores["cosine_spearman"]


@pytest.fixture(scope="session")
def shared_or_pypi_lee():
    from csrv2.assets import registry as assets

    try:
        return assets.fetch("gensim-test-data")
    except assets.AssetError as err:
        pytest.skip(f"needs the Lee set from PyPI (gensim) and could not fetch it: {err}")
