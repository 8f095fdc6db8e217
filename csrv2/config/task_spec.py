"""A task defined in YAML (data.tasks): where its rows are and which columns hold what. csrv2.data.task_files reads it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
