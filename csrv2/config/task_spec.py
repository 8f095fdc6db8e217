"""A task defined in YAML (data.tasks): where its rows are and which columns hold what. csrv2.data.task_files reads it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from csrv2.config import strict

# What a task can be: its MTEB type decides how a split is scored and how contrastive labels are made.
TASK_TYPES = (
    "classification",
    "clustering",
    "retrieval",
    "sts",
    "pair_classification",
    "reranking",
    "image_classification",
)


@dataclass
class TaskSpec:
    name: str = ""
    """Name the task is referred to by (data.task, eval.tasks)."""
    type: Literal[TASK_TYPES] = "classification"
    """MTEB task type; decides how the split is scored and how contrastive labels are made."""
    path: str | dict[str, str] = ""
    """A .csv / .tsv / .jsonl / .parquet file, one per split ({train: a.csv, test: b.csv}), or `hf:<id>[:<config>]`.
    retrieval: a folder or an hf: dataset in MTEB's layout; reranking: a folder (layouts: csrv2.data.task_files)."""
    text_column: str = "text"
    """Column holding the text (or the first text of a pair)."""
    text2_column: str = "text2"
    """Column holding the second text of a pair (sts, pair_classification)."""
    label_column: str = "label"
    """Column holding the class (classification, clustering) or the 0/1 pair label."""
    score_column: str = "score"
    """Column holding the gold similarity (sts)."""
    score_max: float = 5.0
    """Top of the sts gold scale; a pair scoring ≥ 0.6 × score_max (3 of 5) is a contrastive positive."""
    split_column: str = ""
    """Column naming each row's split (train / test); empty → a seeded, stratified split."""
    test_fraction: float = 0.2
    """Share of rows held out for testing when the file has no split column."""
    seed: int = 0
    """Seed of the held-out split."""
    revision: str = ""
    """hf: datasets: the branch, tag or commit to load; empty → the default branch."""


def resolve_input_paths(raw: dict, folder: str | Path) -> dict:
    """A run config's raw YAML mapping with its relative input paths — data.tasks[].path (one file, a folder, or one
    per split) and data.embeddings / data.eval_embeddings — read from `folder`, the YAML file's own, where a file or
    folder of that name exists there; otherwise they stay relative to the current folder (as configs written before
    this rule expect). `hf:` ids, absolute paths and whatever is not a string are left alone. Changes `raw` in place."""
    data = raw.get("data") if isinstance(raw, dict) else None
    if not isinstance(data, dict):
        return raw

    def resolve(value):
        if not isinstance(value, str) or not value or value.startswith("hf:") or Path(value).expanduser().is_absolute():
            return value
        there = Path(folder) / value
        return str(there.resolve()) if there.exists() else value

    for key in ("embeddings", "eval_embeddings"):
        if key in data:
            data[key] = resolve(data[key])
    for spec in data.get("tasks") or []:
        if isinstance(spec, dict) and "path" in spec:
            path = spec["path"]
            spec["path"] = {k: resolve(v) for k, v in path.items()} if isinstance(path, dict) else resolve(path)
    return raw


def read_run_yaml(path: str | Path | None) -> dict:
    """A run config's YAML (strict.read_yaml) with its relative input paths resolved (resolve_input_paths); None → {}."""
    return resolve_input_paths(strict.read_yaml(path), Path(path).parent) if path is not None else {}
