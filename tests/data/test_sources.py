"""The source records of the public sets, and the proof that converting the pinned upstream files gives the shared
folder's rows.

The equality test needs the upstream files themselves, which the repository must not hold: it reads them from
`$CSRV2_TEST_UPSTREAM`, a folder laid out like raw.githubusercontent.com (<owner>/<repo>/<commit>/<path>; built by
`python scripts/upstream_mirror.py DIR`), and skips without it or without the shared folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from csrv2.data import fetch
from csrv2.data.catalog import SHARED_SETS
from csrv2.data.convert import CONVERTERS
from csrv2.data.sources import SOURCES
from csrv2.data.task_files import task_from_folder

DATA_FILES = {  # the files whose rows the catalog reads, per task type
    "sts": ("pairs.jsonl",),
    "pair_classification": ("pairs.jsonl",),
    "retrieval": ("corpus.jsonl", "queries.jsonl", "qrels.tsv"),
    "reranking": ("rerank.jsonl",),
    "clustering": ("texts.jsonl",),
}


def test_every_set_has_a_source_and_a_converter():
    assert set(SOURCES) == set(CONVERTERS) == set(SHARED_SETS)
    for source in SOURCES.values():
        assert len(source.commit) == 40 and source.files and source.licence and source.citation
        for f in source.files:
            assert len(f.sha256) == 64 and len(f.blob) == 40 and f.bytes > 0
    assert SOURCES["cranfield"].url("cran.qry", "http://127.0.0.1:8000/") == (
        "http://127.0.0.1:8000/noramtboraas/information-retrieval/4ea1b8e02da1db64b68b0364d50620b3c95528dc/cran.qry"
    )


def test_the_records_name_the_files_the_shared_folder_was_converted_from(shared_data):
    listed = shared_data / "SOURCES.jsonl"
    if not listed.is_file():
        pytest.skip(f"{listed} is absent")
    for line in listed.read_text().splitlines():
        row = json.loads(line)
        source = SOURCES[row["set"]]
        assert (source.repo, source.commit) == (row["repo"], row["commit"]), row
        files = {f.path: f for f in source.files}
        assert (files[row["path"]].blob, files[row["path"]].bytes) == (row["blob"], row["bytes"]), row


def _upstream() -> Path:
    folder = os.environ.get("CSRV2_TEST_UPSTREAM")
    if not folder or not Path(folder).is_dir():
        pytest.skip(
            "needs the pinned upstream files: set CSRV2_TEST_UPSTREAM to a folder laid out <owner>/<repo>/<commit>/"
            "<path> (python scripts/upstream_mirror.py DIR builds one)"
        )
    return Path(folder)


def _same_rows(a, b) -> None:
    assert a.type == b.type and list(a.splits) == list(b.splits)
    for name, split in a.splits.items():
        other = b.splits[name]
        for field in ("texts", "texts2", "query_ids", "positives", "negatives", "qrels"):
            assert getattr(split, field) == getattr(other, field), (name, field)
        for field in ("labels", "scores"):
            x, y = getattr(split, field), getattr(other, field)
            assert (x is None) == (y is None) and (x is None or np.array_equal(x, y)), (name, field)
    assert a.corpus == b.corpus and a.corpus_ids == b.corpus_ids and a.label_names == b.label_names


@pytest.mark.parametrize("name", list(SOURCES))
def test_converted_from_upstream_equals_the_shared_folder(name, shared_data, tmp_path, monkeypatch):
    upstream = _upstream()
    source = SOURCES[name]
    monkeypatch.setenv("CSRV2_HOME", str(tmp_path))
    monkeypatch.setenv("CSRV2_DATA_MIRROR", str(upstream))  # a local folder: files copied, sha256 checked all the same
    monkeypatch.delenv("CSRV2_DATA_OFFLINE", raising=False)
    converted = fetch.fetch_set(name, log=lambda line: None)
    shared = shared_data / source.folder()
    for file_name in DATA_FILES[source.type]:  # byte for byte: texts, labels, scores, splits, ids, extra keys
        assert (converted / file_name).read_bytes() == (shared / file_name).read_bytes(), file_name
    _same_rows(task_from_folder(source.type, converted), task_from_folder(source.type, shared))
