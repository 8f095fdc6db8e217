"""Tasks from files: csv / jsonl / hf: tables and retrieval / reranking folders, with errors that name the column,
file and row."""

import json

import pytest

from csrv2.config.run_config import TaskSpec
from csrv2.data.catalog import get_task
from csrv2.data.task_files import task_from_spec


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
        task_from_spec(TaskSpec(name="mine", type="retrieval", path=str(ret)))
    (rr / "rerank.jsonl").write_text(json.dumps({"query": "q", "positive": ["p"]}) + "\n")
    with pytest.raises(ValueError, match=r"data.tasks\[r\].*negative"):  # a row without a field is named
        task_from_spec(TaskSpec(name="r", type="reranking", path=str(rr)))


def test_hf_path_reads_a_datasets_folder_with_its_splits(tmp_path, monkeypatch):
    """`hf:<id>` goes through datasets.load_dataset; a local folder of split files exercises it offline."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    folder = tmp_path / "ds"
    folder.mkdir()
    for split, n in (("train", 12), ("validation", 4), ("test", 6)):
        (folder / f"{split}.csv").write_text("text,label\n" + "".join(f"{split} text {i},{i % 2}\n" for i in range(n)))
    task = task_from_spec(TaskSpec(name="h", type="classification", path=f"hf:{folder}"))
    assert {k: len(v) for k, v in task.splits.items()} == {"train": 12, "dev": 4, "test": 6}
    assert task.label_names == ["0", "1"] and task.splits["test"].texts[0] == "test text 0"


def test_pair_tasks_from_jsonl_with_a_split_column(tmp_path):
    path = tmp_path / "p.jsonl"
    rows = [{"a": f"s{i}", "b": f"t{i}", "sim": float(i % 6), "part": "train" if i < 8 else "test"} for i in range(12)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    spec = TaskSpec(
        name="p", type="sts", path=str(path), text_column="a", text2_column="b", score_column="sim", split_column="part"
    )
    task = task_from_spec(spec)
    assert len(task.splits["train"]) == 8 and task.splits["test"].scores.tolist() == [2.0, 3.0, 4.0, 5.0]


def test_spec_errors_name_the_column_file_and_row(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("text,label\nhello,a\n,b\n")
    with pytest.raises(ValueError, match="label_column='cls'.*columns: text, label"):
        task_from_spec(TaskSpec(name="x", path=str(path), label_column="cls"))
    with pytest.raises(ValueError, match="row 2, column 'text'"):
        task_from_spec(TaskSpec(name="x", path=str(path)))
    with pytest.raises(FileNotFoundError, match=r"data.tasks\[x\].path"):
        task_from_spec(TaskSpec(name="x", path=str(tmp_path / "missing.csv")))
    path.write_text("text,text2,label\na,b,2\n")
    with pytest.raises(ValueError, match="pair labels must be 0/1"):
        task_from_spec(TaskSpec(name="x", type="pair_classification", path=str(path)))
    with pytest.raises(KeyError, match="unknown task 'nope'.*r8"):
        get_task("nope")


def test_sts_from_a_file_uses_its_score_scale(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("text,text2,score,split\na,b,0.7,train\nc,d,0.5,train\ne,f,0.9,test\n")
    spec = TaskSpec(name="s", type="sts", path=str(path), split_column="split", score_max=1.0)
    ex = task_from_spec(spec).training_examples()
    assert ex.texts == ["a", "b", "c", "d"] and ex.labels[0] == ex.labels[1] and ex.labels[2] != ex.labels[3]


def test_empty_header_only_tiny_and_unlabelled_files_are_named(tmp_path):
    """Each a clear error naming the file (or row), never a task with an empty split."""
    cases = {
        "empty.csv": ("", "is empty"),
        "header.csv": ("text,label\n", "has a header but no data rows"),
        "tiny.csv": ("text,label\na,x\nb,y\n", "too few for a train/test split"),
        "nolabel.csv": ("text,label\na,x\nb,\nc,y\n", "row 2, column 'label': empty label"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_text(content)
        with pytest.raises(ValueError, match=message):
            task_from_spec(TaskSpec(name="t", path=str(tmp_path / name)))


def test_one_file_per_split(tmp_path):
    """path: {train: a.csv, test: b.csv} keeps each file's rows in its split (no seeded split); a plain string still
    works; a bad mapping, a missing split file, split_column with split files and a stray revision name the field."""
    (tmp_path / "a.csv").write_text("text,label\n" + "".join(f"train row {i},{'xy'[i % 2]}\n" for i in range(6)))
    (tmp_path / "b.csv").write_text("text,label\ntest row 0,y\ntest row 1,x\ntest row 2,z\n")
    spec = TaskSpec(name="two", path={"train": str(tmp_path / "a.csv"), "test": str(tmp_path / "b.csv")})
    task = get_task("two", [spec])
    assert task.splits["train"].texts == [f"train row {i}" for i in range(6)]
    assert task.splits["test"].texts == ["test row 0", "test row 1", "test row 2"]
    assert task.label_names == ["x", "y", "z"] and task.splits["test"].labels.tolist() == [1, 0, 2]
    with pytest.raises(ValueError, match=r"data.tasks\[two\].path: one file per split.*'training'"):
        task_from_spec(TaskSpec(name="two", path={"training": str(tmp_path / "a.csv")}))
    with pytest.raises(FileNotFoundError, match=r"data.tasks\[two\].path.test: '.*nope.csv' is not a file"):
        task_from_spec(
            TaskSpec(name="two", path={"train": str(tmp_path / "a.csv"), "test": str(tmp_path / "nope.csv")})
        )
    with pytest.raises(ValueError, match="split_column='part'"):
        task_from_spec(TaskSpec(name="two", path={"train": str(tmp_path / "a.csv")}, split_column="part"))
    with pytest.raises(ValueError, match=r"data.tasks\[two\].path gives a train file and no test file"):
        task_from_spec(TaskSpec(name="two", path={"train": str(tmp_path / "a.csv")}))  # used to score train rows
    (tmp_path / "sub").mkdir()
    for same in (str(tmp_path / "a.csv"), str(tmp_path / "sub" / ".." / "a.csv")):
        with pytest.raises(ValueError, match=r"path: test and train are the same file|train and test are the same"):
            task_from_spec(TaskSpec(name="two", path={"train": str(tmp_path / "a.csv"), "test": same}))
    with pytest.raises(ValueError, match=r"data.tasks\[two\].revision='v1' applies to hf: datasets only"):
        task_from_spec(TaskSpec(name="two", path=str(tmp_path / "a.csv"), revision="v1"))
    with pytest.raises(ValueError, match=r"data.tasks\[r\].path: a retrieval task is one folder"):
        task_from_spec(TaskSpec(name="r", type="retrieval", path={"test": str(tmp_path)}))


def test_yaml_path_mapping_goes_through_the_config_loader(tmp_path):
    from csrv2.config.run_config import Config, ConfigError

    raw = {"data": {"tasks": [{"name": "t", "path": {"train": "a.csv", "test": "b.csv"}, "revision": ""}]}}
    assert Config.from_dict(raw).data.tasks[0].path == {"train": "a.csv", "test": "b.csv"}
    with pytest.raises(ConfigError, match=r"data.tasks\[0\].path"):
        Config.from_dict({"data": {"tasks": [{"name": "t", "path": 3}]}})


def fake_mteb(monkeypatch, splits_of_qrels):
    """datasets.load_dataset replaced by real in-memory datasets in MTEB's retrieval layout; records the calls."""
    datasets = pytest.importorskip("datasets")
    calls = []
    corpus = {
        "_id": ["d1", "d2", "d3", "d4"],
        "title": ["Cats", "", "Bonds", None],
        "text": ["purr", "bark", "yield", "rates"],
    }
    queries = {"_id": ["q1", "q2", "q3", "q4"], "text": ["cat?", "dog?", "bond?", "rate?"]}

    def load_dataset(path, name=None, revision=None, **_):
        calls.append((path, name, revision))
        if name == "corpus":
            return datasets.DatasetDict({"corpus": datasets.Dataset.from_dict(corpus)})
        if name == "queries":
            return datasets.DatasetDict({"queries": datasets.Dataset.from_dict(queries)})
        return datasets.DatasetDict({s: datasets.Dataset.from_dict(rows) for s, rows in splits_of_qrels.items()})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_hf_retrieval_in_mteb_layout_with_a_revision(monkeypatch):
    qrels = {
        "train": {"query-id": ["q1", "q2"], "corpus-id": ["d1", "d2"], "score": [1, 2]},
        "test": {"query-id": ["q3", "q4", "q4"], "corpus-id": ["d3", "d4", "d1"], "score": [1, 1, 0]},
    }
    calls = fake_mteb(monkeypatch, qrels)
    task = task_from_spec(TaskSpec(name="m", type="retrieval", path="hf:org/mini-ir", revision="abc123"))
    assert calls == [("org/mini-ir", "corpus", "abc123"), ("org/mini-ir", "queries", "abc123"),
                     ("org/mini-ir", "default", "abc123")]  # fmt: skip
    assert task.corpus_ids == ["d1", "d2", "d3", "d4"] and task.corpus == ["Cats purr", "bark", "Bonds yield", "rates"]
    assert task.splits["train"].query_ids == ["q1", "q2"] and task.splits["train"].texts == ["cat?", "dog?"]
    assert task.splits["train"].qrels == {"q1": {"d1": 1}, "q2": {"d2": 2}}
    assert task.splits["test"].qrels == {"q3": {"d3": 1}, "q4": {"d4": 1}}  # score 0 is not relevant

    calls = fake_mteb(monkeypatch, {"test": qrels["test"]})  # test-only qrels: halved like other retrieval tasks
    task = task_from_spec(TaskSpec(name="m", type="retrieval", path="hf:org/mini-ir:my-qrels"))
    assert calls[-1] == ("org/mini-ir", "my-qrels", None)
    assert sorted(task.splits["train"].query_ids + task.splits["test"].query_ids) == ["q3", "q4"]
    fake_mteb(monkeypatch, {"test": {"qid": ["q1"], "corpus-id": ["d1"], "score": [1]}})
    with pytest.raises(ValueError, match=r"path='hf:org/mini-ir'.*lacks columns \['query-id'\]"):
        task_from_spec(TaskSpec(name="m", type="retrieval", path="hf:org/mini-ir"))
