"""Converters from the pinned upstream files (csrv2.data.sources) to the shared data folder's layout (docs/data.md).

Each converter takes `read(path) -> bytes` (an upstream file by its path in its repository, already verified against
its sha256) and returns {file name: text} for the set's folder, in exactly the shared folder's format: one JSON object
per line (`json.dumps(row, ensure_ascii=False)`), qrels as tab-separated text with a header. Run on the pinned files,
every converter gives the same rows as the shared folder's files (tests/data/test_sources.py compares them).

    files = CONVERTERS["cranfield"](lambda path: (mirror / path).read_bytes())
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable

Read = Callable[[str], bytes]
Converter = Callable[[Read], dict[str, str | bytes]]  # file name -> text (utf-8) or bytes as they came


def _jsonl(rows: Iterable[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _tsv(header: tuple[str, ...], rows: Iterable[tuple]) -> str:
    return "".join("\t".join(map(str, row)) + "\n" for row in (header, *rows))


def _text(read: Read, path: str, encoding: str = "utf-8") -> str:
    return read(path).decode(encoding)


def _lines(read: Read, path: str, encoding: str = "utf-8") -> list[str]:
    """The file's lines without line ends (a final line without newline counts; a trailing empty one does not)."""
    return _text(read, path, encoding).splitlines()


# -- sts --------------------------------------------------------------------------------------------------------------
SEMEVAL = "data/sts/semeval-sts/"


def _semeval(read: Read, files: list[tuple[str, str, str]]) -> list[dict]:
    """Rows of brmson/dataset-sts SemEval tsv files (score, text1, text2); pairs without a gold score are dropped."""
    rows = []
    for split, subset, path in files:
        for line in _lines(read, SEMEVAL + path):
            score, text1, text2 = line.split("\t")
            if score.strip():
                row = {"text1": text1.strip(), "text2": text2.strip(), "score": float(score)}
                rows.append(row | {"split": split, "subset": subset})
    return rows


def _semeval_set(year: int, files: dict[str, tuple[str, ...]], readme: tuple[str, ...] = ()) -> Converter:
    def convert(read: Read) -> dict[str, str | bytes]:
        listed = [(split, subset, f"{year}/{subset}.{split}.tsv") for split, names in files.items() for subset in names]
        out: dict[str, str | bytes] = {"pairs.jsonl": _jsonl(_semeval(read, listed))}
        return out | {name: read(f"{SEMEVAL}{year}/{name}") for name in readme}

    return convert


def _msrvid(read: Read) -> dict[str, str | bytes]:
    """castorini/data msrvid: line-aligned a.txt, b.txt, sim.txt, id.txt per split (already lower-cased)."""
    rows = []
    for split in ("train", "test"):
        a, b, sim, ids = (_lines(read, f"msrvid/{split}/{f}.txt") for f in ("a", "b", "sim", "id"))
        if not len(a) == len(b) == len(sim) == len(ids):
            raise ValueError(f"msrvid/{split}: a, b, sim and id files differ in length")
        rows += [
            {"text1": t1, "text2": t2, "score": float(s), "split": split, "subset": "MSRvid", "id": i}
            for t1, t2, s, i in zip(a, b, sim, ids)
        ]
    return {"pairs.jsonl": _jsonl(rows)}


def _stsbenchmark(read: Read) -> dict[str, str | bytes]:
    """PhilipMay/stsb-multi-mt English csv files: text1, text2, score; no header."""
    rows = []
    for split in ("train", "dev", "test"):
        for text1, text2, score in csv.reader(io.StringIO(_text(read, f"data/stsb-en-{split}.csv"))):
            rows.append({"text1": text1, "text2": text2, "score": float(score), "split": split})
    return {"pairs.jsonl": _jsonl(rows), "LICENSE": read("LICENSE")}


# -- pair classification ----------------------------------------------------------------------------------------------
def _msrp(read: Read) -> dict[str, str | bytes]:
    """brmson/dataset-sts MSRP tsv files (Quality, #1 ID, #2 ID, #1 String, #2 String; a BOM before the header)."""
    rows = []
    for split, name in (("train", "train"), ("dev", "val"), ("test", "test")):
        lines = _lines(read, f"data/para/msr/msr-para-{name}.tsv", "utf-8-sig")
        for line in lines[1:]:
            label, id1, id2, text1, text2 = line.split("\t")
            rows.append({"text1": text1, "text2": text2, "label": int(label), "split": split, "id1": id1, "id2": id2})
    return {"pairs.jsonl": _jsonl(rows), "LICENCE.html": read("data/para/msr/LICENCE.html")}


PIT = "SemEval-PIT2015/"


def _pit2015(read: Read) -> dict[str, str | bytes]:
    """SemEval-2015 PIT: test pairs with the expert's true / false (test.label; `----`, debatable, dropped) and dev
    pairs by turker votes "(yes, no)": 3 or more yes → 1, 1 or fewer → 0, 2 (debatable) dropped."""
    rows = []
    data = _lines(read, PIT + "data/test.data")
    labels = _lines(read, PIT + "data/test.label")
    if len(data) != len(labels):
        raise ValueError("PIT2015 test.data and test.label differ in length")
    for line, label in zip(data, labels):
        _, topic, text1, text2, expert = line.split("\t")[:5]
        verdict = label.split("\t")[0]
        if verdict in ("true", "false"):
            rows.append(
                {
                    "text1": text1,
                    "text2": text2,
                    "label": int(verdict == "true"),
                    "split": "test",
                    "expert_score_0_5": int(expert),
                    "topic": topic,
                }
            )
    for line in _lines(read, PIT + "data/dev.data"):
        _, topic, text1, text2, votes = line.split("\t")[:5]
        yes = int(votes.strip("()").split(",")[0])
        if yes != 2:
            rows.append(
                {
                    "text1": text1,
                    "text2": text2,
                    "label": int(yes >= 3),
                    "split": "dev",
                    "turker_votes": votes,
                    "topic": topic,
                }
            )
    return {"pairs.jsonl": _jsonl(rows), "README_PIT2015.md": read(PIT + "README.md")}


# -- reranking --------------------------------------------------------------------------------------------------------
def _trecqa(read: Read) -> dict[str, str | bytes]:
    """brmson/dataset-sts anssel/wang csv files (qtext, label, atext): answers grouped by question in file order;
    the clean setting keeps questions with at least one positive and one negative answer."""
    rows = []
    for split in ("train", "dev", "test"):
        grouped: dict[str, dict[str, list[str]]] = {}
        for r in csv.DictReader(io.StringIO(_text(read, f"data/anssel/wang/{split}.csv"))):
            group = grouped.setdefault(r["qtext"], {"positive": [], "negative": []})
            group["positive" if r["label"] == "1" else "negative"].append(r["atext"])
        rows += [
            {"query": q, "positive": g["positive"], "negative": g["negative"], "split": split}
            for q, g in grouped.items()
            if g["positive"] and g["negative"]
        ]
    return {"rerank.jsonl": _jsonl(rows)}


# -- clustering -------------------------------------------------------------------------------------------------------
def _gsdmm(path: str) -> Converter:
    """jackyin12/GSDMM data files: one JSON object {text, cluster} a line."""

    def convert(read: Read) -> dict[str, str | bytes]:
        rows = [json.loads(line) for line in _lines(read, path) if line.strip()]
        return {"texts.jsonl": _jsonl({"text": r["text"], "label": int(r["cluster"])} for r in rows)}

    return convert


def _stc2(name: str, readme: bool) -> Converter:
    """jacoxu/STC2: dataset/<name>.txt (one text a line) and dataset/<name>_gnd.txt (its label a line)."""

    def convert(read: Read) -> dict[str, str | bytes]:
        texts = _lines(read, f"dataset/{name}.txt", "utf-8-sig")
        labels = _lines(read, f"dataset/{name}_gnd.txt")
        if len(texts) != len(labels):
            raise ValueError(f"STC2 {name}: {len(texts)} texts but {len(labels)} labels")
        out = {"texts.jsonl": _jsonl({"text": t.strip(), "label": int(g)} for t, g in zip(texts, labels))}
        return out | ({"README_STC2.md": read("README.md")} if readme else {})

    return convert


# -- retrieval --------------------------------------------------------------------------------------------------------
def _smart_records(text: str) -> list[tuple[str, dict[str, list[str]]]]:
    """SMART-format records (`.I id` then `.T`, `.A`, `.W`, … fields, each a run of lines): [(id, {field: lines})]."""
    records: list[tuple[str, dict[str, list[str]]]] = []
    field = None
    for line in text.splitlines():
        if line.startswith(".I"):
            records.append((line[2:].strip(), {}))
            field = None
        elif re.match(r"^\.[A-Z]\s*$", line):
            field = line[1]
            records[-1][1].setdefault(field, [])
        elif field is not None:
            records[-1][1][field].append(line)
    return records


def _joined(lines: list[str]) -> str:
    return " ".join(line.strip() for line in lines if line.strip())


RETRIEVAL_FILES = ("corpus.jsonl", "queries.jsonl", "qrels.tsv")


def _retrieval(
    corpus: Iterable[tuple[str, str]], queries: Iterable[tuple], qrels: Iterable[tuple]
) -> dict[str, str | bytes]:
    return {
        "corpus.jsonl": _jsonl({"id": i, "text": t} for i, t in corpus),
        "queries.jsonl": _jsonl(q if isinstance(q, dict) else {"id": q[0], "text": q[1]} for q in queries),
        "qrels.tsv": _tsv(("query_id", "doc_id", "relevance"), qrels),
    }


def _cranfield(read: Read) -> dict[str, str | bytes]:
    """noramtboraas/information-retrieval: cran.all.1400, cran.qry (ids 001…365 renumbered 1…225 in file order, as
    cranqrel numbers them), cranqrel (query, doc, code 1…4 or -1). qrels.tsv: every pair with code 1-4; graded:
    relevance 5 - code; raw codes kept in qrels_raw_codes.tsv."""
    docs = [(i, _joined(f.get("W", []))) for i, f in _smart_records(_text(read, "cran.all.1400"))]
    queries = [
        {"id": str(n), "text": _joined(f.get("W", [])), "orig_I": i}
        for n, (i, f) in enumerate(_smart_records(_text(read, "cran.qry")), 1)
    ]
    raw = [tuple(line.split()[:3]) for line in _lines(read, "cranqrel") if line.strip()]
    judged = [(q, d, int(code)) for q, d, code in raw]
    out = _retrieval(docs, queries, [(q, d, 1) for q, d, code in judged if 1 <= code <= 4])
    out["qrels_graded.tsv"] = _tsv(("query_id", "doc_id", "relevance"), ((q, d, 5 - c) for q, d, c in judged if c > 0))
    out["qrels_raw_codes.tsv"] = _tsv(("query_id", "doc_id", "cranfield_code"), judged)
    out["cranqrel.readme"] = read("cranqrel.readme")
    return out


def _glasgow(folder: str, stem: str) -> Converter:
    """fbergh/IR_Project CISI / MED / ADI files: <STEM>.ALL and .QRY in SMART format (text: title and abstract, .T
    and .W, whitespace runs collapsed to one space), .REL whitespace-separated (query, doc, …; MED's has an extra 0
    column: query 0 doc 1). Only queries with a judgement are kept (CISI judges 76 of its 112)."""

    def records(read: Read, path: str) -> list[tuple[str, str]]:
        parsed = _smart_records(_text(read, path, "latin-1"))
        return [(i, " ".join(" ".join(f.get("T", []) + f.get("W", [])).split())) for i, f in parsed]

    def convert(read: Read) -> dict[str, str | bytes]:
        base = f"data/{folder}/{stem}"
        qrels = []
        for line in _lines(read, base + ".REL"):
            cols = line.split()
            if cols:
                qrels.append((cols[0], cols[2] if stem == "MED" else cols[1], 1))
        judged = {q for q, _, _ in qrels}
        queries = [(i, t) for i, t in records(read, base + ".QRY") if i in judged]
        return _retrieval(records(read, base + ".ALL"), queries, qrels)

    return convert


def _npl_blocks(text: str) -> list[list[str]]:
    """NPL files: records separated by lines holding only `/`."""
    blocks, current = [], []
    for line in text.splitlines():
        if line.strip() == "/":
            blocks.append(current)
            current = []
        else:
            current.append(line)
    return [b for b in blocks + [current] if any(x.strip() for x in b)]


def _npl(read: Read) -> dict[str, str | bytes]:
    """fbergh/IR_Project npl: doc-text and query-text (id line, then text lines, `/` between records), rlv-ass (query
    id line, then relevant doc ids over several lines)."""

    def records(path: str, lower: bool) -> list[tuple[str, str]]:
        out = []
        for block in _npl_blocks(_text(read, path)):
            lines = [x for x in block if x.strip()]
            text = " ".join(" ".join(lines[1:]).split())
            out.append((lines[0].strip(), text.lower() if lower else text))
        return out

    qrels = []
    for block in _npl_blocks(_text(read, "data/npl/rlv-ass")):
        lines = [x for x in block if x.strip()]
        qrels += [(lines[0].strip(), d, 1) for x in lines[1:] for d in x.split()]
    return _retrieval(records("data/npl/doc-text", False), records("data/npl/query-text", True), qrels)


CONVERTERS: dict[str, Converter] = {
    "stsbenchmark": _stsbenchmark,
    "sts12": _semeval_set(
        2012,
        {"train": ("MSRpar", "SMTeuroparl"), "test": ("MSRpar", "OnWN", "SMTeuroparl", "SMTnews")},
        ("00-readme.test.txt",),
    ),
    "sts12-msrvid": _msrvid,
    "sts13": _semeval_set(2013, {"test": ("FNWN", "OnWN", "headlines")}),
    "sts14": _semeval_set(2014, {"test": ("OnWN", "deft-forum", "deft-news", "headlines", "images", "tweet-news")}),
    "sts15": _semeval_set(
        2015,
        {"test": ("answers-forums", "answers-students", "belief", "headlines", "images")},
        ("answers-forums.LICENSE",),
    ),
    "msrp": _msrp,
    "twitter-pit2015": _pit2015,
    "trecqa": _trecqa,
    "cranfield": _cranfield,
    "cisi": _glasgow("cisi", "CISI"),
    "medline": _glasgow("med", "MED"),
    "adi": _glasgow("adi", "ADI"),
    "npl": _npl,
    "stc2-stackoverflow": _stc2("StackOverflow", readme=True),
    "stc2-searchsnippets": _stc2("SearchSnippets", readme=False),
    "googlenews-ts": _gsdmm("data/TS"),
    "tweet89": _gsdmm("data/Tweet"),
}
