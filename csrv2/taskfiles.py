"""Tasks from files: a shared-data task folder, or a task defined in YAML (config.TaskSpec) from a local csv / tsv /
jsonl / parquet file, a folder of jsonl files (retrieval, reranking) or `hf:<dataset id>`.

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

from csrv2.config import TaskSpec
from csrv2.tasks import (
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
    try:
        table = readers[base]()
    except pd.errors.EmptyDataError as err:
        raise ValueError(f"{where}: {path} is empty (no header, no rows)") from err
    if len(table) == 0:
        raise ValueError(f"{where}: {path} has a header but no data rows")
    return {"": table}


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
        task = task_from_folder(spec.type, folder)
    except (KeyError, ValueError) as err:
        problem = f"a row has no field {err}" if isinstance(err, KeyError) else f"a value does not parse ({err})"
        raise ValueError(
            f"data.tasks[{spec.name}] ({folder}): {problem}; expected {', '.join(wanted)} laid out as "
            "described above csrv2.taskfiles.RANKING_FILES"
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
                    f"{spec.path}, row {empty[0] + 1}, column {spec.label_column!r}: empty label "
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
    return Task(spec.name, spec.type, splits, f"{spec.type} from {spec.path}", names, score_max=spec.score_max)
