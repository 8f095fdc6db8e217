"""The task model: MTEB-style tasks with typed splits, the labels the supervised contrastive loss trains on, and
the role names of an embedded task. Pure data structures (no I/O); the catalog and task files fill them.

    task.splits["test"].texts, .labels       # what evaluation scores
    ex = task.training_examples("train")      # texts (or images) + contrastive labels, per task type
    ROLES[task.type]                          # the embedding arrays an evaluated task carries, e.g. ("queries", "corpus")

How contrastive labels are made (docs/method.md): classification/clustering: the class; retrieval: a query and its
relevant documents share a label, every other document has its own; STS: a pair scoring ≥ 0.6 · score_max (3 of 5)
shares a label; pair classification: label-1 pairs share a label; reranking: a query and its positives share one,
each negative has its own. Texts linked through several pairs form one group (union-find).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

# The embedding arrays ("roles") of an evaluated task, per type; csrv2.backbone.embeddings fills them, csrv2.evaluation.scoring scores them:
#   train/test: classifier fit / scored rows; test (clustering): the rows clustered; queries/corpus: retrieval;
#   text1/text2: the two sides of each pair; queries/docs: reranking (docs = each query's candidates, in query order).
ROLES: dict[str, tuple[str, ...]] = {
    "classification": ("train", "test"),
    "image_classification": ("train", "test"),
    "clustering": ("test",),
    "retrieval": ("queries", "corpus"),
    "sts": ("text1", "text2"),
    "pair_classification": ("text1", "text2"),
    "reranking": ("queries", "docs"),
}

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
        """Texts with supervised-contrastive labels per task type (module docstring), from `split` only."""
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


def classification_task(name, texts, labels, test_fraction=0.2, description="", task_type="classification") -> Task:
    """A task from rows without a split: a seeded stratified split (SPLITS)."""
    ids, names = encode_labels(labels)
    whole = Split(texts=list(texts), labels=ids)
    train, test = stratified_split(ids, test_fraction)
    return Task(name, task_type, {"train": whole.subset(train), "test": whole.subset(test)}, description, names)


def pairs_task(name, task_type, rows: dict[str, Split], description, score_max=5.0) -> Task:
    if "train" not in rows and "dev" in rows:
        rows["train"] = rows.pop("dev")
    if "train" not in rows and "test" in rows:  # test only: halve it (SPLITS)
        train, test = random_split(len(rows["test"]), 0.5)
        whole = rows.pop("test")
        rows["train"], rows["test"] = whole.subset(train), whole.subset(test)
    return Task(name, task_type, rows, description, score_max=score_max)


def retrieval_task(
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


@dataclass
class EmbeddedTask:
    """Backbone embeddings per role and the gold data of one task's evaluation split.

    arrays: role → (N_role, d) float32 embeddings (roles per type in ROLES).
    classification / image_classification: train_labels (N_train,), test_labels (N_test,).
    clustering: labels (N_test,).  retrieval: relevance, one {corpus row: gain} per query row.
    sts: scores (N,).  pair_classification: labels (N,).
    reranking: groups, one (query row, doc rows (n,), is_relevant (n,)) per query.
    """

    name: str
    type: str
    arrays: dict[str, np.ndarray]
    gold: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.type not in ROLES:
            raise ValueError(f"task {self.name!r}: unknown type {self.type!r}; valid: {', '.join(ROLES)}")
        missing = [r for r in ROLES[self.type] if r not in self.arrays]
        if missing:
            raise ValueError(f"task {self.name!r} ({self.type}) lacks embedding roles {missing}")

    def rows(self) -> np.ndarray:
        """(N, d) float64: every row the task encodes, its roles stacked in ROLES order."""
        return np.concatenate([np.asarray(self.arrays[role], dtype=np.float64) for role in ROLES[self.type]])

    def mean(self) -> np.ndarray:
        """(d,) float64 mean of every row the task encodes (every role): what test-time centering moves b_pre to."""
        return self.rows().mean(0)
