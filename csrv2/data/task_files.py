"""Tasks from files: a shared-data task folder, or a task defined in YAML (config.TaskSpec) from a local csv / tsv /
jsonl / parquet file (or one file per split: `path: {train: a.csv, test: b.csv}`), a folder of jsonl files
(retrieval, reranking) or `hf:<dataset id>[:<config>]` at `revision` (retrieval: MTEB's corpus / queries / qrels
configs, see _hf_retrieval).

A task folder is laid out like the shared data folder (docs/assets.md):
    sts, pair_classification:  pairs.jsonl {text1, text2, score | label, split?}
    clustering:                texts.jsonl {text, label}
    retrieval:                 corpus.jsonl {id, text}; queries.jsonl {id, text}; qrels.tsv (query_id, doc_id, relevance)
    reranking:                 rerank.jsonl {query, positive: [texts], negative: [texts], split?}
Rows without a split are test rows.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from csrv2.config.run_config import TaskSpec
from csrv2.data.tasks import (
    Split,
    Task,
    classification_task,
    encode_labels,
    pairs_task,
    random_split,
    retrieval_task,
    stratified_split,
)


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


def task_from_folder(task_type: str, folder: Path) -> Task:
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
        return pairs_task(name, "sts", splits, about)
    if task_type == "pair_classification":
        splits = _by_split(
            _jsonl(folder / "pairs.jsonl"),
            lambda rs: Split(
                texts=[r["text1"] for r in rs],
                texts2=[r["text2"] for r in rs],
                labels=np.array([int(r["label"]) for r in rs], dtype=np.int64),
            ),
        )
        return pairs_task(name, "pair_classification", splits, about)
    if task_type == "clustering":
        rows = _jsonl(folder / "texts.jsonl")
        return classification_task(
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
        return retrieval_task(name, corpus, queries, qrels, about + "; queries halved with seed 0")
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


SPLIT_FILES = ("train", "dev", "validation", "test")  # the keys of path: {train: a.csv, test: b.csv}


def _source(spec: TaskSpec) -> str:
    """spec.path as messages show it."""
    return spec.path if isinstance(spec.path, str) else ", ".join(f"{k}: {v}" for k, v in spec.path.items())


def _hf_dataset(spec: TaskSpec, config_name: str | None):
    """datasets.load_dataset of spec.path (`hf:<id>[:<config>]`, the config overridden by `config_name`) at
    spec.revision."""
    import datasets

    dataset_id, _, subset = spec.path[3:].partition(":")  # hf:<id> or hf:<id>:<config name>
    return datasets.load_dataset(dataset_id, config_name or subset or None, revision=spec.revision or None)


def _read_table(spec: TaskSpec):
    """{split name or "": DataFrame} from a local csv/tsv/jsonl/parquet file, one file per split, or `hf:<id>`."""
    where = f"data.tasks[{spec.name}].path"
    if spec.revision and not (isinstance(spec.path, str) and spec.path.startswith("hf:")):
        raise ValueError(f"data.tasks[{spec.name}].revision={spec.revision!r} applies to hf: datasets only")
    if isinstance(spec.path, dict):
        bad = [k for k, v in spec.path.items() if k not in SPLIT_FILES or not isinstance(v, str) or not v.strip()]
        if not spec.path or bad:
            raise ValueError(
                f"{where}: one file per split, e.g. {{train: a.csv, test: b.csv}}; keys among "
                f"{', '.join(SPLIT_FILES)}, each a file path; got {spec.path!r}"
            )
        if spec.split_column:
            raise ValueError(
                f"{where} gives one file per split and split_column={spec.split_column!r} splits rows: keep one"
            )
        if set(spec.path) == {"train"}:  # scoring would fall back to the training rows
            raise ValueError(
                f"{where} gives a train file and no test file, so the task would be scored on its training rows; add "
                "test: <file> (or dev / validation), or give one file (path: a.csv) to split it by test_fraction"
            )
        files = {split: Path(file).expanduser().resolve() for split, file in spec.path.items()}
        for split, file in files.items():
            twice = [other for other, same in files.items() if other != split and same == file]
            if twice:
                raise ValueError(
                    f"{where}: {split} and {twice[0]} are the same file ({spec.path[split]}); the test rows would be "
                    "training rows: give each split its own file"
                )
        return {split: _read_file(file, f"{where}.{split}") for split, file in spec.path.items()}
    if spec.path.startswith("hf:"):
        dd = _hf_dataset(spec, None)
        return {s: dd[s].to_pandas() for s in dd}
    return {"": _read_file(spec.path, where)}


def _read_file(name: str, where: str):
    """One local table file → DataFrame; a missing, unreadable, empty or header-only file is named."""
    import pandas as pd

    path = Path(name).expanduser()
    if name.startswith("hf:") or not path.is_file():
        raise FileNotFoundError(
            f"{where}: {name!r} is not a file (give a .csv, .tsv, .jsonl or .parquet file, or hf:<dataset id> as the "
            "whole path)"
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
    try:
        table = readers[base]()
    except pd.errors.EmptyDataError as err:
        raise ValueError(f"{where}: {path} is empty (no header, no rows)") from err
    if len(table) == 0:
        raise ValueError(f"{where}: {path} has a header but no data rows")
    return table


def _column(df, column: str, spec: TaskSpec, field_name: str, text: bool) -> list:
    if column not in df.columns:
        raise ValueError(
            f"data.tasks[{spec.name}].{field_name}={column!r}: no such column in {_source(spec)} "
            f"(columns: {', '.join(map(str, df.columns))})"
        )
    values = df[column].tolist()
    for row, v in enumerate(values):
        if v is None or (isinstance(v, float) and np.isnan(v)) or (text and not (isinstance(v, str) and v.strip())):
            raise ValueError(
                f"{_source(spec)}, row {row + 1}, column {column!r}: expected {'a text' if text else 'a value'}, got {v!r}"
            )
    return values


# A YAML retrieval / reranking task is a folder laid out like ../shared/data's:
#   retrieval: corpus.jsonl {id, text}; queries.jsonl {id, text}; qrels.tsv with columns query_id, doc_id, relevance
#   reranking: rerank.jsonl {query, positive: [texts], negative: [texts], split}; rows without a split are test rows,
#              so training needs rows with "split": "train"
RANKING_FILES = {"retrieval": ("corpus.jsonl", "queries.jsonl", "qrels.tsv"), "reranking": ("rerank.jsonl",)}


def _hf_retrieval(spec: TaskSpec) -> Task:
    """Retrieval from an hf: dataset in MTEB's layout: config `corpus` (split corpus: _id, title, text), config
    `queries` (split queries: _id, text) and the qrels (config `default`, or the one after `hf:<id>:`; a split per
    split: query-id, corpus-id, score > 0 relevant). Qrels with train and test splits keep them; test-only qrels are
    halved with seed 0 like every other retrieval task."""
    where = f"data.tasks[{spec.name}].path={spec.path!r}"
    parts = {}
    for config_name, split, columns in (
        ("corpus", "corpus", ("_id", "text")),
        ("queries", "queries", ("_id", "text")),
        (spec.path[3:].partition(":")[2] or "default", None, ("query-id", "corpus-id", "score")),
    ):
        dd = _hf_dataset(spec, config_name)
        if split is not None and split not in dd:
            raise ValueError(f"{where}: config {config_name!r} has no split {split!r} (splits: {', '.join(dd)})")
        tables = {split: dd[split].to_pandas()} if split else {s: dd[s].to_pandas() for s in dd}
        for name, df in tables.items():
            missing = [c for c in columns if c not in df.columns]
            if missing:
                raise ValueError(
                    f"{where}: config {config_name!r}, split {name!r} lacks columns {missing} (MTEB's retrieval "
                    f"layout; columns: {', '.join(map(str, df.columns))})"
                )
        parts[config_name if split else "qrels"] = tables
    corpus_df, queries_df = parts["corpus"]["corpus"], parts["queries"]["queries"]
    titles = corpus_df["title"] if "title" in corpus_df.columns else [""] * len(corpus_df)
    corpus = {  # MTEB's document text: title and body joined by a space (a missing title is empty)
        str(i): f"{t if isinstance(t, str) else ''} {x}".strip()
        for i, t, x in zip(corpus_df["_id"], titles, corpus_df["text"])
    }
    queries = {str(i): str(x) for i, x in zip(queries_df["_id"], queries_df["text"])}
    qrels_by_split: dict[str, dict[str, dict[str, int]]] = {}
    for split, df in parts["qrels"].items():
        judged = qrels_by_split.setdefault("dev" if split == "validation" else split, {})
        for q, d, score in zip(df["query-id"], df["corpus-id"], df["score"]):
            if float(score) > 0 and str(q) in queries:
                judged.setdefault(str(q), {})[str(d)] = int(score)
    description = f"retrieval from {spec.path} (MTEB layout)"
    if "train" not in qrels_by_split:  # test-only (most MTEB sets): queries halved with seed 0
        everything = {q: r for split in qrels_by_split.values() for q, r in split.items()}
        return retrieval_task(spec.name, corpus, queries, everything, description + "; queries halved with seed 0")
    splits = {
        split: Split(texts=[queries[q] for q in judged], query_ids=list(judged), qrels=judged)
        for split, judged in qrels_by_split.items()
    }
    return Task(spec.name, "retrieval", splits, description, corpus_ids=list(corpus), corpus=list(corpus.values()))


def _ranking_task_from_folder(spec: TaskSpec) -> Task:
    """Retrieval / reranking from a folder of jsonl (+ qrels.tsv) files (splits as the shared-data tasks get them),
    or retrieval from an hf: dataset in MTEB's layout."""
    if not isinstance(spec.path, str):
        raise ValueError(
            f"data.tasks[{spec.name}].path: a {spec.type} task is one folder (or hf:<dataset id> for retrieval), "
            f"not one file per split; got {spec.path!r}"
        )
    if spec.path.startswith("hf:") and spec.type == "retrieval":
        return _hf_retrieval(spec)
    if spec.revision or spec.path.startswith("hf:"):
        raise ValueError(
            f"data.tasks[{spec.name}]: a {spec.type} task from hf: is not supported (retrieval is, in MTEB's "
            "layout); give a folder holding rerank.jsonl, and no revision"
        )
    folder = Path(spec.path).expanduser()
    wanted = RANKING_FILES[spec.type]
    missing = [f for f in wanted if not (folder / f).is_file()]
    if not folder.is_dir() or missing:
        raise ValueError(
            f"data.tasks[{spec.name}].path={spec.path!r}: a {spec.type} task is a folder holding "
            f"{', '.join(wanted)}; missing: {', '.join(missing) if folder.is_dir() else 'the folder'}"
        )
    try:
        task = task_from_folder(spec.type, folder)
    except (KeyError, ValueError) as err:
        problem = f"a row has no field {err}" if isinstance(err, KeyError) else f"a value does not parse ({err})"
        raise ValueError(
            f"data.tasks[{spec.name}] ({folder}): {problem}; expected {', '.join(wanted)} laid out as "
            "described above csrv2.data.task_files.RANKING_FILES"
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
            "(csrv2 data list); files support classification, clustering, sts, "
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
            labels = _column(df, spec.label_column, spec, "label_column", text=False)
            empty = [row for row, v in enumerate(labels) if isinstance(v, str) and not v.strip()]
            if empty:
                raise ValueError(
                    f"{_source(spec)}, row {empty[0] + 1}, column {spec.label_column!r}: empty label "
                    f"({len(empty)} such rows); give every row a label, or drop the rows"
                )
            all_labels.append(labels)
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
        if not len(train) or (spec.test_fraction > 0 and not len(test)):  # test_fraction 0: every row trains
            raise ValueError(
                f"data.tasks[{spec.name}]: {len(whole)} rows are too few for a train/test split with "
                f"test_fraction={spec.test_fraction} ({len(train)} train, {len(test)} test rows); add rows, raise "
                "test_fraction, or give a split_column"
            )
        splits = {"train": whole.subset(train), "test": whole.subset(test)}
    splits = {("dev" if s == "validation" else s): v for s, v in splits.items()}
    return Task(spec.name, spec.type, splits, f"{spec.type} from {_source(spec)}", names, score_max=spec.score_max)
