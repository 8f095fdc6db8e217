"""From texts to answers: a corpus file encoded by a trained model into a searchable folder, searched by text.

    model = csrv2.load("runs/quickstart")
    build_corpus_index(model, "docs.jsonl", "docs_index", run="runs/quickstart", k=8)      # `csrv2 index build`
    found = CorpusIndex.open("docs_index").search(model, ["how do I …"], top=10)            # `csrv2 search`
    found[0][0]  →  {"rank": 1, "id": "doc-17", "score": 0.83, "text": "…"}

The corpus: a .jsonl, .csv or .parquet file with an id column and a text column (names given). Ids are ints when
every id is an integer (JSON numbers, or digits in a CSV), else strings; they must be distinct.

Building encodes the texts `chunk_texts` at a time (model.encode(texts, k, kind="document"), unit-normalised: the
index scores cosine) into `.<out>.partial/`, one file per finished chunk, written atomically: a build that is killed
continues from its last complete chunk when run again with the same arguments. Then the folder `out` is written as
one unit (a temporary folder renamed into place):

    corpus_index.json   what was built: format, run, the head's fingerprint, k, backend, sizes, the corpus' sha256
    ids.json            the corpus ids, row order (row r of the index is ids[r])
    texts.jsonl         the texts, one JSON string per line; texts_offsets.npy (N + 1,) int64 byte offsets
    index/              the SparseIndex (backend "sparseindex"); or the engine collection (backend "milvus" / "qdrant")

An engine backend stores the codes in a Milvus or Qdrant collection whose entity ids are the row numbers; the ids and
texts stay in the folder. `uri` says where the engine is: a milvus-lite file or a Qdrant local path (relative paths
live inside `out`), or a server's URL — a cluster is one more URL.

The model is anything with `.head` (a SparseHead: its hidden width bounds k, its weights give the fingerprint that
ties an index to the run that built it) and `.encode(texts, k, kind=...)` → SparseCodes, as csrv2.SparseModel has.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from csrv2.files import atomic_write, atomic_write_dir, atomic_write_json, check_replaceable, sha256_file
from csrv2.head.codes import SparseCodes
from csrv2.index.inputs import check_packed
from csrv2.index.kernels import HAVE_NUMBA, counting_sort_packed
from csrv2.index.milvus import MilvusSparse
from csrv2.index.qdrant import QdrantSparse
from csrv2.index.sparse_index import SparseIndex

FORMAT = "csrv2.CorpusIndex/1"
MANIFEST, IDS, TEXTS, TEXT_OFFSETS, INDEX_DIR = (
    "corpus_index.json",
    "ids.json",
    "texts.jsonl",
    "texts_offsets.npy",
    "index",
)
BACKENDS = ("sparseindex", "milvus", "qdrant")
DEFAULT_URI = {"milvus": "milvus.db", "qdrant": "qdrant"}  # inside the folder unless an absolute path or a URL
Log = Callable[[str], None]


# -- the corpus file --------------------------------------------------------------------------------------------------
def read_corpus(path: str | Path, id_field: str = "id", text_field: str = "text") -> tuple[list, list[str]]:
    """(ids, texts) of a .jsonl / .csv / .parquet file; every mistake is one ValueError naming the file and row."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"corpus {path} not found")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        ids, texts = _read_jsonl(path, id_field, text_field)
    elif suffix in (".csv", ".tsv"):
        ids, texts = _read_csv(path, id_field, text_field, "\t" if suffix == ".tsv" else ",")
    elif suffix == ".parquet":
        ids, texts = _read_parquet(path, id_field, text_field)
    else:
        raise ValueError(f"corpus {path}: unknown format {suffix!r}; give a .jsonl, .csv or .parquet file")
    if not ids:
        raise ValueError(f"corpus {path} holds no texts")
    seen: dict[Any, int] = {}
    for row, key in enumerate(ids):
        first = seen.setdefault(key, row)
        if first != row:
            raise ValueError(f"corpus {path}: id {key!r} is given twice (rows {first + 1} and {row + 1})")
    return ids, texts


def _read_jsonl(path: Path, id_field: str, text_field: str) -> tuple[list, list[str]]:
    ids, texts = [], []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"corpus {path}:{line_no}: not valid JSON ({err})") from None
            if not isinstance(record, dict):
                raise ValueError(f"corpus {path}:{line_no}: expected a JSON object, got {type(record).__name__}")
            for field in (id_field, text_field):
                if field not in record:
                    raise ValueError(
                        f"corpus {path}:{line_no}: no column {field!r} (the record has: {', '.join(record) or 'none'}); "
                        "name the columns with --id-field / --text-field"
                    )
            ids.append(_checked_id(record[id_field], f"{path}:{line_no}"))
            texts.append(_checked_text(record[text_field], f"{path}:{line_no}"))
    return _uniform_ids(ids, path), texts


def _read_csv(path: Path, id_field: str, text_field: str, delimiter: str) -> tuple[list, list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        columns = reader.fieldnames or []
        for field in (id_field, text_field):
            if field not in columns:
                raise ValueError(
                    f"corpus {path}: no column {field!r} (columns: {', '.join(columns) or 'none'}); "
                    "name the columns with --id-field / --text-field"
                )
        rows = [(row[id_field], row[text_field]) for row in reader]
    ids = [key.strip() for key, _ in rows]
    for row, key in enumerate(ids):
        if not key:
            raise ValueError(f"corpus {path}: row {row + 1} has an empty id")
    if all(re.fullmatch(r"-?\d+", key) for key in ids):
        ids = [int(key) for key in ids]
    return ids, [text or "" for _, text in rows]


def _read_parquet(path: Path, id_field: str, text_field: str) -> tuple[list, list[str]]:
    import pyarrow.parquet as pq  # pyarrow comes with `datasets`, a csrv2 dependency

    columns = pq.read_schema(path).names
    for field in (id_field, text_field):
        if field not in columns:
            raise ValueError(
                f"corpus {path}: no column {field!r} (columns: {', '.join(columns)}); "
                "name the columns with --id-field / --text-field"
            )
    table = pq.read_table(path, columns=[id_field, text_field])
    raw_ids, raw_texts = table.column(id_field).to_pylist(), table.column(text_field).to_pylist()
    ids = [_checked_id(key, f"{path} row {row + 1}") for row, key in enumerate(raw_ids)]
    texts = [_checked_text(text, f"{path} row {row + 1}") for row, text in enumerate(raw_texts)]
    return _uniform_ids(ids, path), texts


def _checked_id(key, where: str):
    if isinstance(key, bool) or not isinstance(key, int | str) or (isinstance(key, str) and not key):
        raise ValueError(f"corpus {where}: the id must be an integer or a non-empty string, got {key!r}")
    return key


def _checked_text(text, where: str) -> str:
    if not isinstance(text, str):
        raise ValueError(f"corpus {where}: the text must be a string, got {text!r}")
    return text


def _uniform_ids(ids: list, path: Path) -> list:
    """All ints, or all strings (ints written as strings when the two are mixed)."""
    if all(isinstance(key, int) for key in ids):
        return ids
    return [str(key) for key in ids]


# -- building ----------------------------------------------------------------------------------------------------------
def head_fingerprint(head: torch.nn.Module) -> str:
    """sha256 of the head's parameters and buffers (names, shapes, bytes): which trained head made the codes."""
    digest = hashlib.sha256()
    for name, tensor in sorted(head.state_dict().items()):
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}{tuple(data.shape)}{data.dtype}".encode())
        digest.update(data.numpy().tobytes() if data.dtype != torch.bfloat16 else data.float().numpy().tobytes())
    return digest.hexdigest()


def check_k(model, k: int | None) -> int:
    """k as given (or the head's trained k), refused outside [1, the head's hidden width]."""
    hidden = int(model.head.hidden)
    k = int(model.head.k) if k is None else k
    if not isinstance(k, int) or not 1 <= k <= hidden:
        raise ValueError(f"k={k} is outside [1, {hidden}]: the head has {hidden} latents (its hidden width)")
    return k


def build_corpus_index(
    model,
    corpus: str | Path,
    out: str | Path,
    *,
    run: str = "",
    k: int | None = None,
    id_field: str = "id",
    text_field: str = "text",
    chunk_texts: int = 2048,
    backend: str = "sparseindex",
    uri: str | None = None,
    collection: str = "csrv2_corpus",
    overwrite: bool = False,
    progress: bool = True,
    log: Log = print,
) -> Path:
    """Encode the corpus with `model` at k and write the searchable folder `out` (module docstring); returns it.

    run: what `csrv2 search` loads to encode queries (a run folder or hub id), recorded in the manifest. An existing
    `out` is refused unless overwrite=True. backend "milvus" / "qdrant": the engine at `uri` (default: a file or path
    inside `out`) receives the codes in `collection` (replaced when overwrite=True, else refused if it exists)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if not isinstance(chunk_texts, int) or chunk_texts < 1:
        raise ValueError(f"chunk_texts must be a positive int, got {chunk_texts!r}")
    k = check_k(model, k)
    out = Path(out).expanduser().absolute()
    if out.exists() and not overwrite:
        what = "a corpus index" if (out / MANIFEST).is_file() else "a folder that is not a corpus index"
        raise FileExistsError(f"{out} exists already ({what}); choose another --out or pass --overwrite")
    ids, texts = read_corpus(corpus, id_field, text_field)
    corpus = Path(corpus).expanduser().absolute()
    fingerprint = head_fingerprint(model.head)
    record = {
        "format": FORMAT,
        "run": str(run),
        "head_sha256": fingerprint,
        "k": k,
        "dim": int(model.head.hidden),
        "corpus": str(corpus),
        "corpus_sha256": sha256_file(corpus),
        "id_field": id_field,
        "text_field": text_field,
        "n_docs": len(ids),
        "chunk_texts": chunk_texts,
    }
    partial = out.parent / f".{out.name}.partial"
    chunks = _encode_chunks(model, texts, k, record, partial, progress, log)
    idx = np.concatenate([c[0] for c in chunks]) if len(chunks) > 1 else chunks[0][0]
    val = np.concatenate([c[1] for c in chunks]) if len(chunks) > 1 else chunks[0][1]
    check_packed(idx, val, f"codes of {corpus}", int(model.head.hidden))
    manifest = {**record, "backend": backend, "nnz": int((val != 0).sum()), "built": time.strftime("%Y-%m-%dT%H:%M:%S")}
    del manifest["chunk_texts"]
    if backend != "sparseindex":
        manifest["uri"] = uri or DEFAULT_URI[backend]
        manifest["collection"] = collection

    def write(tmp: Path) -> None:
        if backend == "sparseindex":
            if HAVE_NUMBA:
                index = SparseIndex(*counting_sort_packed(idx, val, manifest["dim"]), len(ids))
            else:
                codes = SparseCodes(torch.from_numpy(idx.astype(np.int64)), torch.from_numpy(val), manifest["dim"])
                index = SparseIndex.build(codes)
            index.save(tmp / INDEX_DIR)
        else:
            _fill_engine(
                backend, _engine_uri(manifest["uri"], tmp, out), collection, idx, val, manifest["dim"], overwrite
            )
        (tmp / IDS).write_text(json.dumps(ids) + "\n", encoding="utf-8")
        _write_texts(tmp, texts)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")

    # Only a corpus index replaces a corpus index (its manifest marks one written before output markers existed).
    ours = lambda folder: (folder / MANIFEST).is_file()  # noqa: E731
    if backend != "sparseindex" and manifest["uri"] == DEFAULT_URI[backend] and out.exists():
        check_replaceable(out, "corpus index", ours)
        shutil.rmtree(out)  # overwrite: the old engine files inside the folder go too (the collection is rebuilt)
    atomic_write_dir(out, write, kind="corpus index", legacy=ours)
    shutil.rmtree(partial, ignore_errors=True)
    log(f"indexed {len(ids)} texts at k={k} ({backend}) in {out}")
    return out


def _encode_chunks(model, texts: list[str], k: int, record: dict, partial: Path, progress: bool, log: Log):
    """[(idx (n, k) int32, val (n, k) float32)] per chunk; finished chunks are kept in `partial` and reused."""
    build_file = partial / "build.json"
    if partial.is_dir():
        try:
            previous = json.loads(build_file.read_text())
        except (OSError, json.JSONDecodeError):
            previous = None
        if previous != record:
            why = (
                "another run's head"
                if previous and previous.get("head_sha256") != record["head_sha256"]
                else "other input"
            )
            log(f"{partial}: a partial build of {why} is there; starting over")
            shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    atomic_write_json(build_file, record)
    size = record["chunk_texts"]
    starts = range(0, len(texts), size)
    done = [start for start in starts if (partial / _chunk_name(start)).is_file()]
    if done:
        log(f"resuming: {len(done)} of {len(starts)} chunks were encoded by an earlier build")
    from tqdm import tqdm  # a csrv2 dependency; here so that importing the module stays light

    bar = tqdm(
        total=len(texts), initial=min(len(texts), len(done) * size), unit="text", desc="encode", disable=not progress
    )
    chunks = []
    with bar:
        for start in starts:
            file = partial / _chunk_name(start)
            if file.is_file():
                with np.load(file) as stored:
                    chunks.append((stored["indices"], stored["values"]))
                continue
            rows = texts[start : start + size]
            with torch.no_grad():
                codes = model.encode(rows, k, kind="document").normalized()
            idx = codes.indices.cpu().numpy().astype(np.int32)
            val = codes.values.detach().cpu().to(torch.float32).numpy()
            if idx.shape != (len(rows), k):
                raise ValueError(
                    f"the model encoded {len(rows)} texts into codes of shape {idx.shape}, not {(len(rows), k)}"
                )

            def save(tmp: Path, idx=idx, val=val) -> None:
                with open(tmp, "wb") as handle:
                    np.savez(handle, indices=idx, values=val)

            atomic_write(file, save)
            chunks.append((idx, val))
            bar.update(len(rows))
    return chunks


def _chunk_name(start: int) -> str:
    return f"chunk_{start:012d}.npz"


def _write_texts(folder: Path, texts: Sequence[str]) -> None:
    offsets = np.zeros(len(texts) + 1, np.int64)
    with open(folder / TEXTS, "wb") as handle:
        for row, text in enumerate(texts):
            line = (json.dumps(text, ensure_ascii=False) + "\n").encode("utf-8")
            handle.write(line)
            offsets[row + 1] = offsets[row] + len(line)
    np.save(folder / TEXT_OFFSETS, offsets)


def _is_url(uri: str) -> bool:
    return "://" in uri


def _engine_uri(uri: str, folder: Path, final: Path) -> str:
    """A URL as it is; a relative path inside `folder` (the folder being written, later renamed to `final`)."""
    if _is_url(uri) or Path(uri).is_absolute():
        return uri
    return str(folder / uri)


def _engine(backend: str, uri: str, collection: str, dim: int):
    """(store, close) for a Milvus or Qdrant collection at `uri`; the client packages are optional. close() also
    stops a milvus-lite engine started for a local file (pymilvus' close leaves it running, bound to the path)."""
    if backend == "milvus":
        try:
            from pymilvus import MilvusClient
        except ImportError as err:
            raise ValueError(f"backend milvus needs pymilvus (pip install 'csrv2[milvus]'): {err}") from None
        client = MilvusClient(uri)

        def close() -> None:
            client.close()
            if not _is_url(uri):
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(uri)

        return MilvusSparse(client, collection, dim=dim), close
    try:
        from qdrant_client import QdrantClient
    except ImportError as err:
        raise ValueError(f"backend qdrant needs qdrant-client (pip install 'csrv2[qdrant]'): {err}") from None
    client = QdrantClient(url=uri) if _is_url(uri) else QdrantClient(path=uri)
    return QdrantSparse(client, collection, dim=dim), client.close


def _fill_engine(backend, uri, collection, idx, val, dim, overwrite) -> None:
    store, close = _engine(backend, uri, collection, dim)
    try:
        exists = (
            store.client.has_collection(collection)
            if backend == "milvus"
            else store.client.collection_exists(collection)
        )
        if exists and not overwrite:
            raise FileExistsError(
                f"{backend} at {uri}: collection {collection!r} exists already; pass --overwrite or --collection"
            )
        if exists:
            store.client.drop_collection(collection) if backend == "milvus" else store.client.delete_collection(
                collection
            )
        store.create(dim)
        codes = SparseCodes(torch.from_numpy(idx.astype(np.int64)), torch.from_numpy(val), dim)
        store.upsert(codes, batch=4096)
    finally:
        close()


# -- searching ---------------------------------------------------------------------------------------------------------
@dataclass
class CorpusIndex:
    """A folder written by build_corpus_index, opened for search (the SparseIndex memory-mapped)."""

    folder: Path
    manifest: dict
    ids: list
    _offsets: np.ndarray = dataclasses.field(default=None, repr=False)  # (N + 1,) byte offsets into texts.jsonl
    _index: SparseIndex | None = dataclasses.field(default=None, repr=False)  # opened on the first search
    _engine: tuple | None = dataclasses.field(default=None, repr=False)  # (store, close) of an engine backend

    @classmethod
    def open(cls, folder: str | Path) -> CorpusIndex:
        folder = Path(folder).expanduser().absolute()
        path = folder / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not a corpus index (no {MANIFEST}); build one with csrv2 index build")
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError(
                f"{path}: format {manifest.get('format') if isinstance(manifest, dict) else None!r} is not {FORMAT!r}"
            )
        ids = json.loads((folder / IDS).read_text(encoding="utf-8"))
        if len(ids) != manifest["n_docs"]:
            raise ValueError(f"{folder / IDS}: {len(ids)} ids, the manifest says {manifest['n_docs']} documents")
        return cls(folder, manifest, ids, np.load(folder / TEXT_OFFSETS, mmap_mode="r"))

    def __len__(self) -> int:
        return int(self.manifest["n_docs"])

    @property
    def k(self) -> int:
        return int(self.manifest["k"])

    def check_model(self, model, run: str = "") -> None:
        """Refuse a model whose head is not the one that encoded the corpus (its codes would not match)."""
        if head_fingerprint(model.head) != self.manifest["head_sha256"]:
            raise ValueError(
                f"{self.folder} was built by another run ({self.manifest['run'] or 'unrecorded'}); the head of "
                f"{run or 'the model given'} is a different one: search with that run, or build an index with this one"
            )

    def text(self, row: int) -> str:
        with open(self.folder / TEXTS, "rb") as handle:
            handle.seek(int(self._offsets[row]))
            return json.loads(handle.read(int(self._offsets[row + 1] - self._offsets[row])))

    def search_codes(self, codes: SparseCodes, top: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """(scores (Q, top) float32, rows (Q, top) int64) for unit-normalised query codes; rows -1 pad."""
        backend = self.manifest["backend"]
        if backend == "sparseindex":
            if self._index is None:
                self._index = SparseIndex.load(self.folder / INDEX_DIR)
            scores, rows = self._index.search(codes, top=min(top, len(self)))
        else:
            if self._engine is None:
                uri = _engine_uri(self.manifest["uri"], self.folder, self.folder)
                self._engine = _engine(backend, uri, self.manifest["collection"], self.manifest["dim"])
            scores, rows = self._engine[0].search(codes, top=min(top, len(self)), exact_ties=True)
        return np.asarray(scores), np.asarray(rows)

    def close(self) -> None:
        """Close an engine backend's client (and stop a milvus-lite engine this index started)."""
        if self._engine is not None:
            self._engine[1]()
            self._engine = None

    def search(self, model, queries: Sequence[str], top: int = 10) -> list[list[dict]]:
        """Per query, its hits best first: {"rank", "id", "score", "text"} (documents sharing no latent with the
        query score 0 and are listed after the others, by row, as SparseIndex does; engines list only the former)."""
        if not isinstance(top, int) or top < 1:
            raise ValueError(f"top must be a positive int, got {top!r}")
        self.check_model(model)
        with torch.no_grad():
            codes = model.encode(list(queries), self.k, kind="query").normalized()
        scores, rows = self.search_codes(codes, top)
        out = []
        for q in range(len(queries)):
            hits = []
            for rank, (score, row) in enumerate(zip(scores[q], rows[q]), 1):
                if row < 0:
                    break
                hits.append({"rank": rank, "id": self.ids[row], "score": float(score), "text": self.text(int(row))})
            out.append(hits)
        return out
