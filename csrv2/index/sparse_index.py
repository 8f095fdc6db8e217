"""Exact top-n search over k-sparse codes: an inverted index (`SparseIndex`); its kernels are in csrv2.index.kernels.

Layout (CSC of the (N, h) database matrix D):
    offsets (h + 1,) int64      postings of latent l are [offsets[l], offsets[l+1])
    doc_ids (nnz,)   int32      document ids, ascending within each latent
    values  (nnz,)   float32    D[doc, l]

A query q (≤ k active latents) scores only documents on its posting lists:
    score(doc) = Σ_{l : q_l ≠ 0} q_l · D[doc, l]
The work per query is the number of postings touched, P(q) = Σ_{l ∈ q} |postings(l)|, never O(N). Because every
list is sorted by doc id, the query's lists are walked together one block of BLOCK doc ids at a time into a small
per-thread accumulator that stays in L2 cache (a dense N-long accumulator would miss cache on every posting at
N = 1M); only blocks holding a posting are visited. Candidates are reduced with a size-`top` heap; ties go to the
lower document id.

Products of float32 are exact in float64 and sums of ≤ k of them almost so; scores are rounded to float32 at the
end, so results do not depend on the order of a query's latents and equal a float64 brute force `Q @ Dᵀ` rounded to
float32.

Results equal brute force over all N documents: documents sharing no active latent with the query score exactly 0
and are ranked like any other (by id among equal scores). The kernels score only the candidates; when a query has
fewer than `top` candidates, or its worst kept score is ≤ 0 (possible only with zero or negative values), the
lowest-id non-candidates are merged in with score 0 — found from the query's posting lists, never by an O(N) scan
unless the candidates themselves cover the low ids. Only an index with fewer than `top` documents pads the row with
score -inf and id -1.

The kernels use numba (a dependency of csrv2) and run in parallel over queries. Where numba cannot be installed
(a new Python it has no wheel for yet), a numpy path gives identical results, more slowly.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import scipy.sparse
import torch

from csrv2.files import MARKER, atomic_write_dir, open_snapshot, sha256_file
from csrv2.head.codes import SparseCodes
from csrv2.index import kernels as index_kernels
from csrv2.index.inputs import as_packed, postings_of
from csrv2.index.kernels import BLOCK, HAVE_NUMBA, counting_sort, numba, search_one_numpy, search_serial

FORMAT = "csrv2.SparseIndex/2"  # index.json covers itself (meta_sha256) and all three arrays (sha256)
LEGACY_FORMAT = "csrv2.SparseIndex/1"  # before: array checksums optional, index.json unhashed
ARRAYS = (("offsets", np.int64), ("doc_ids", np.int32), ("values", np.float32))
KIND = "SparseIndex"  # the kind csrv2.files records in the folder's marker


def _group_by_latent(rows, lats, vals, dim):
    if HAVE_NUMBA:
        return counting_sort(rows, lats, vals, dim)
    order = np.argsort(lats, kind="stable")  # stable keeps doc ids ascending within a latent
    offsets = np.zeros(dim + 1, np.int64)
    np.cumsum(np.bincount(lats, minlength=dim), out=offsets[1:])
    return offsets, rows[order].astype(np.int32), vals[order]


class SparseIndex:
    """Inverted index over k-sparse codes; exact top-n by dot product (cosine when the codes are normalised).

    >>> index = SparseIndex.build(doc_codes.normalized())           # SparseCodes (N, k) or scipy CSR (N, h)
    >>> scores, ids = index.search(query_codes.normalized(), top=10)  # (Q, 10) float32, (Q, 10) int64
    """

    def __init__(self, offsets: np.ndarray, doc_ids: np.ndarray, values: np.ndarray, n_docs: int):
        """offsets (dim + 1,) int, doc_ids (nnz,) int, values (nnz,) float. The offsets are checked here, always
        (O(dim)); the O(nnz) checks of doc ids and values are load(verify=True)'s (the kernels stay in bounds
        without them)."""
        if offsets.ndim != 1 or offsets.shape[0] < 2 or doc_ids.ndim != 1 or int(offsets[-1]) != doc_ids.shape[0]:
            raise ValueError("SparseIndex: offsets must be (dim + 1,) with offsets[-1] == len(doc_ids)")
        if int(offsets[0]) != 0 or (np.diff(offsets) < 0).any():
            raise ValueError("SparseIndex: offsets must rise from 0 to nnz without going down")
        if doc_ids.shape != values.shape:
            raise ValueError(f"SparseIndex: doc_ids {doc_ids.shape} and values {values.shape} differ in shape")
        if not 0 <= n_docs < 2**31 - 1:
            raise ValueError(f"SparseIndex: n_docs={n_docs} must lie in [0, 2^31 - 1) (int32 document ids)")
        self.offsets, self.doc_ids, self.values = offsets, doc_ids, values
        self.n_docs = int(n_docs)
        self.dim = offsets.shape[0] - 1
        self._lock = threading.Lock()  # the scratch buffers are shared by all calls
        self._scratch: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._extremes: tuple[np.ndarray, np.ndarray] | None = None  # per-latent largest / smallest value (pruning)
        self.build_seconds = 0.0

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def build(cls, codes: SparseCodes | scipy.sparse.spmatrix, dim: int | None = None) -> SparseIndex:
        """Index database codes: SparseCodes (N, k) or a scipy sparse (N, h) matrix; zeros are dropped."""
        start = time.perf_counter()
        rows, lats, vals, n_rows, dim = postings_of(codes, dim, "SparseIndex.build(codes)")
        offsets, doc_ids, values = _group_by_latent(rows, lats, vals, dim)
        index = cls(offsets, doc_ids, values, n_rows)
        index.build_seconds = time.perf_counter() - start
        return index

    def add(self, codes: SparseCodes | scipy.sparse.spmatrix) -> np.ndarray:
        """Append documents; they get ids n_docs, n_docs + 1, …; returns those ids (M,) int64."""
        rows, lats, vals, n_new, _ = postings_of(codes, self.dim, "SparseIndex.add(codes)")
        if self.n_docs + n_new >= 2**31 - 1:
            raise ValueError("SparseIndex.add: more than 2^31 - 1 documents do not fit int32 ids")
        new_off, new_ids, new_vals = _group_by_latent(rows + self.n_docs, lats, vals, self.dim)
        old_counts, new_counts = np.diff(self.offsets), np.diff(new_off)
        offsets = self.offsets + new_off  # each latent's list grows by its new postings
        # Within each latent: old postings first, then the new ones (their ids are all larger: order kept).
        old_pos = np.arange(len(self.doc_ids)) + np.repeat(new_off[:-1], old_counts)
        new_pos = np.arange(len(new_ids)) + np.repeat(self.offsets[1:], new_counts)
        doc_ids = np.empty(offsets[-1], np.int32)
        values = np.empty(offsets[-1], np.float32)
        doc_ids[old_pos], values[old_pos] = self.doc_ids, self.values
        doc_ids[new_pos], values[new_pos] = new_ids, new_vals
        first = self.n_docs
        self.offsets, self.doc_ids, self.values = offsets, doc_ids, values
        self.n_docs += n_new
        self._scratch = self._extremes = None
        return np.arange(first, self.n_docs, dtype=np.int64)

    # -- search ----------------------------------------------------------------------------------
    def search(self, queries: SparseCodes | scipy.sparse.spmatrix, top: int = 10, threads: int | None = None):
        """Exact top-`top` documents by dot product for each query.

        queries: SparseCodes (Q, k) or scipy sparse (Q, h). Returns (scores (Q, top) float32, ids (Q, top) int64),
        best first, ties by lower id, equal to brute force `Q @ Dᵀ` (documents sharing no latent score 0); padded
        with (-inf, -1) only when the index holds fewer than `top` documents. torch tensors when the queries
        are SparseCodes, numpy arrays otherwise. threads: numba threads for Q > 1 (None = all).
        """
        if not isinstance(top, int | np.integer) or top < 1:
            raise ValueError(f"SparseIndex.search: top must be a positive int, got {top!r}")
        q_idx, q_val = as_packed(queries, self.dim, "SparseIndex.search(queries)")
        n_q = q_idx.shape[0]
        out_s = np.empty((n_q, top), np.float32)
        out_i = np.empty((n_q, top), np.int64)
        if n_q and HAVE_NUMBA:
            self._search_numba(q_idx, q_val, out_s, out_i, threads)
        else:
            for q in range(n_q):
                search_one_numpy(self.offsets, self.doc_ids, self.values, q_idx[q], q_val[q], out_s[q], out_i[q])
        if n_q and (out_i.max() >= self.n_docs or out_i.min() < -1):  # only from a corrupted index
            raise ValueError(
                f"SparseIndex.search: the index holds a document id outside [0, n_docs={self.n_docs}) (corrupted; "
                "SparseIndex.load(path, verify=True) names the file)"
            )
        # Rows whose kept scores do not all beat 0 may rank documents without a shared latent (score 0) higher.
        if n_q == 1:  # one query (the latency path): a scalar test, no temporaries
            if out_i[0, -1] < 0 or out_s[0, -1] <= 0:
                self._merge_zero_scores(q_idx[0], q_val[0], out_s[0], out_i[0])
        else:
            for q in np.flatnonzero((out_i[:, -1] < 0) | (out_s[:, -1] <= 0)):
                self._merge_zero_scores(q_idx[q], q_val[q], out_s[q], out_i[q])
        if isinstance(queries, SparseCodes):
            return torch.from_numpy(out_s), torch.from_numpy(out_i)
        return out_s, out_i

    def _merge_zero_scores(self, q_idx, q_val, out_s, out_i) -> None:
        """Merge the lowest-id documents sharing no latent with the query (score 0) into one result row (top,)."""
        top = out_s.shape[0]
        lists = [self.doc_ids[self.offsets[lat] : self.offsets[lat + 1]] for lat, w in zip(q_idx, q_val) if w != 0]
        bound = 2 * top
        while True:  # non-candidate ids below `bound`; double it until `top` of them are found (work ∝ candidates)
            bound = min(bound, self.n_docs)
            below = [lst[: np.searchsorted(lst, bound)] for lst in lists]
            cands = np.unique(np.concatenate(below)) if below else np.empty(0, np.int64)
            zeros = np.setdiff1d(np.arange(bound, dtype=np.int64), cands, assume_unique=True)[:top]
            if len(zeros) >= top or bound == self.n_docs:
                break
            bound *= 2
        kept = out_i >= 0
        ids = np.concatenate([out_i[kept], zeros])
        scores = np.concatenate([out_s[kept], np.zeros(len(zeros), np.float32)])
        order = np.lexsort((ids, -scores))[:top]
        out_s[:] = -np.inf
        out_i[:] = -1
        out_s[: len(order)] = scores[order]
        out_i[: len(order)] = ids[order]

    def _search_numba(self, q_idx, q_val, out_s, out_i, threads):
        n_threads = numba.config.NUMBA_NUM_THREADS if threads is None else max(1, min(threads, os.cpu_count() or 1))
        parallel = n_threads > 1 and q_idx.shape[0] > 1
        with self._lock:
            acc, flag, touched = self._get_scratch(numba.config.NUMBA_NUM_THREADS if parallel else 1)
            high, low = self._get_extremes()
            lists = (self.offsets, self.doc_ids, self.values, high, low)
            if parallel:
                previous = numba.get_num_threads()
                numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
                try:
                    chunk = max(1, min(64, q_idx.shape[0] // (8 * n_threads)))
                    index_kernels.search_parallel(*lists, q_idx, q_val, acc, flag, touched, out_s, out_i, chunk)
                finally:
                    numba.set_num_threads(previous)
            else:
                search_serial(*lists, q_idx, q_val, acc, flag, touched, out_s, out_i)

    def _get_scratch(self, rows: int):
        """Per-thread block scratch: acc (rows, BLOCK) float64, flag (rows, BLOCK) uint8, touched (rows, BLOCK + 1)
        int32 (see kernels._search_one for the extra slot).

        Independent of N (≈ 208 KiB per thread); flags are all zero between searches.
        """
        if self._scratch is None or self._scratch[0].shape[0] < rows:
            self._scratch = (
                np.zeros((rows, BLOCK), np.float64),
                np.zeros((rows, BLOCK), np.uint8),
                np.zeros((rows, BLOCK + 1), np.int32),
            )
        return self._scratch

    def _get_extremes(self) -> tuple[np.ndarray, np.ndarray]:
        """(dim,) float64 each: every latent's largest and smallest stored value (0 for an empty list), computed
        once per index in one pass over the values; the kernels bound what a list's documents alone can score."""
        if self._extremes is None:
            high, low = np.zeros(self.dim), np.zeros(self.dim)
            starts = self.offsets[:-1]
            filled = np.flatnonzero(self.offsets[1:] > starts)
            if len(filled):  # each filled list's segment ends where the next filled one starts
                values = np.asarray(self.values)
                high[filled] = np.maximum.reduceat(values, starts[filled])
                low[filled] = np.minimum.reduceat(values, starts[filled])
            self._extremes = (high, low)
        return self._extremes

    # -- statistics (cost model) -------------------------------------------------------------------
    def __len__(self) -> int:
        return self.n_docs

    @property
    def nnz(self) -> int:
        return int(self.offsets[-1])

    def posting_lengths(self) -> np.ndarray:
        """(dim,) int64: documents on each latent's posting list."""
        return np.diff(self.offsets)

    def postings_touched(self, queries: SparseCodes | scipy.sparse.spmatrix) -> np.ndarray:
        """(Q,) int64: Σ over each query's active latents of their posting-list lengths (the work of a search)."""
        q_idx, q_val = as_packed(queries, self.dim, "postings_touched(queries)")
        return np.where(q_val != 0, self.posting_lengths()[q_idx], 0).sum(axis=1)

    def memory_bytes(self) -> int:
        """Bytes of the index arrays (excluding the per-thread search scratch of 12 bytes × N per thread)."""
        return int(self.offsets.nbytes + self.doc_ids.nbytes + self.values.nbytes)

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the folder `path` (offsets.npy, doc_ids.npy, values.npy, index.json) as one unit (csrv2.files.
        atomic_write_dir): the files go into a temporary folder of this writer's own, which then takes the place of
        `path`. A save killed at any moment leaves the old index or the new one; concurrent saves leave one of them
        whole. An existing `path` is replaced only when it is an index csrv2 saved; anything else is refused
        (csrv2.files.RefusedFolder), before any work.

        index.json records the sha256 of the three arrays and its own (meta_sha256, over its other keys), so an
        edited n_docs / dim / nnz is named on load like a damaged array."""

        def write(tmp: Path) -> None:
            for name, _ in ARRAYS:
                np.save(tmp / f"{name}.npy", np.ascontiguousarray(getattr(self, name)))
            meta = {"format": FORMAT, "n_docs": self.n_docs, "dim": self.dim, "nnz": self.nnz}
            meta["sha256"] = {f"{name}.npy": sha256_file(tmp / f"{name}.npy") for name, _ in ARRAYS}
            meta["meta_sha256"] = meta_digest(meta)
            (tmp / "index.json").write_text(json.dumps(meta, indent=2) + "\n")

        atomic_write_dir(path, write, KIND, legacy=is_saved_index)

    @classmethod
    def load(cls, path: str | Path, mmap: bool = True, verify: bool = True) -> SparseIndex:
        """Open a saved index; mmap=True maps the arrays read-only (opening costs O(1), pages load on use).

        Always (O(dim)): index.json against its own checksum, dtypes and shapes against it, the offsets. verify=True
        also checks every array against the sha256 that save() recorded, then what the search kernels assume — doc
        ids in [0, n_docs) and strictly rising within each posting list, finite values — and names the file that
        breaks it. It reads the files once (~1 s per GB); verify=False skips that for an index you wrote yourself:
        the kernels stay in bounds on any arrays, so a damaged file then gives wrong results or the library's
        error, never a crash. A save killed between its two renames left the old folder beside `path`
        (csrv2.files.recover_dir): it is put back first. numba compiles separate kernels for read-only arrays: the
        very first search on a mapped index in a fresh numba cache takes ~2 s to compile them; afterwards they load
        from the on-disk cache.
        """
        path = Path(path)
        names = ("index.json", MARKER, *(f"{name}.npy" for name, _ in ARRAYS))
        try:
            files = open_snapshot(path, names)  # one save's files, even if another save replaces the folder meanwhile
        except (FileNotFoundError, NotADirectoryError) as err:
            raise FileNotFoundError(
                f"{path / 'index.json'} not found: {path} is not a folder written by SparseIndex.save ({err.strerror})"
            ) from None
        try:
            if files["index.json"] is None:
                raise FileNotFoundError(
                    f"{path / 'index.json'} not found: expected a folder written by SparseIndex.save"
                )
            meta = read_meta(path / "index.json", files["index.json"].read(), marked=files[MARKER] is not None)
            arrays = {}
            for name, dtype in ARRAYS:
                file, handle = path / f"{name}.npy", files[f"{name}.npy"]
                if handle is None:
                    raise FileNotFoundError(f"{file} not found: the index folder is incomplete")
                if verify and name + ".npy" in meta["sha256"] and sha256_file(handle) != meta["sha256"][name + ".npy"]:
                    raise ValueError(f"{file} does not match the sha256 recorded in index.json (corrupted)")
                arrays[name] = read_npy(handle, file, mmap)
                if arrays[name].dtype != dtype or arrays[name].ndim != 1:
                    raise ValueError(
                        f"{file}: expected a 1-d {np.dtype(dtype)} array, got {arrays[name].dtype} {arrays[name].shape}"
                    )
        finally:
            for handle in files.values():
                if handle is not None:
                    handle.close()
        offsets, doc_ids, values = arrays["offsets"], arrays["doc_ids"], arrays["values"]
        if offsets.shape[0] != meta["dim"] + 1 or doc_ids.shape[0] != meta["nnz"] or values.shape[0] != meta["nnz"]:
            raise ValueError(f"{path}: array shapes do not match index.json (dim {meta['dim']}, nnz {meta['nnz']})")
        if offsets[0] != 0 or offsets[-1] != meta["nnz"] or (np.diff(offsets) < 0).any():
            raise ValueError(
                f"{path / 'offsets.npy'}: offsets must rise from 0 to nnz={meta['nnz']} without going down"
            )
        if verify:
            verify_postings(path, offsets, doc_ids, values, int(meta["n_docs"]))
        return cls(offsets, doc_ids, values, meta["n_docs"])


def meta_digest(meta: dict) -> str:
    """sha256 of index.json's keys other than meta_sha256, serialised canonically (sorted keys, no spaces)."""
    body = {key: value for key, value in meta.items() if key != "meta_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def read_npy(handle, file: Path, mmap: bool) -> np.ndarray:
    """The array of an open .npy file (np.load cannot map an open file): its header read with numpy's own reader,
    then np.memmap (read-only) or np.fromfile. A file shorter than its header promises is named."""
    handle.seek(0)
    try:
        version = np.lib.format.read_magic(handle)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"npy format version {version} is not 1.0 or 2.0")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(handle)
        if dtype.hasobject:
            raise ValueError("it holds Python objects")
        count = int(np.prod(shape, dtype=np.int64))
        if mmap and count:
            return np.memmap(handle, dtype=dtype, mode="r", offset=handle.tell(), shape=shape)
        array = np.fromfile(handle, dtype=dtype, count=count)
    except (ValueError, OSError, EOFError, TypeError) as err:
        raise ValueError(f"{file}: not a readable .npy array ({err})") from err
    if array.size != count:
        raise ValueError(f"{file}: holds {array.size} of the {count} values its header promises (truncated)")
    return array.reshape(shape)


def read_meta(meta_path: Path, text: bytes, marked: bool) -> dict:
    """index.json (its bytes `text`), checked: the format, non-negative integer sizes, and — format /2 — a sha256 for
    each array and meta_sha256 matching the rest (an edited n_docs would return documents that do not exist).
    `marked`: the folder holds csrv2's marker, so a save that writes format /2 made it: a /1 there is an edit that
    would silence the checksums."""
    try:
        meta = json.loads(text.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{meta_path}: not valid JSON ({err})") from err
    if not isinstance(meta, dict) or meta.get("format") not in (FORMAT, LEGACY_FORMAT):
        found = meta.get("format") if isinstance(meta, dict) else meta
        raise ValueError(f"{meta_path}: format {found!r} is not {FORMAT!r}")
    sizes = {key: meta.get(key) for key in ("n_docs", "dim", "nnz")}
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in sizes.values()):
        raise ValueError(f"{meta_path}: n_docs, dim and nnz must be non-negative integers, got {sizes}")
    digests = meta.setdefault("sha256", {})  # absent in indexes saved before checksums (format /1)
    if not isinstance(digests, dict) or not all(isinstance(v, str) for v in digests.values()):
        raise ValueError(f"{meta_path}: sha256 must map file names to digests")
    if set(digests) - {f"{name}.npy" for name, _ in ARRAYS}:
        raise ValueError(f"{meta_path}: sha256 names files that are not the index's arrays: {sorted(digests)}")
    if marked and meta["format"] != FORMAT:
        raise ValueError(f"{meta_path}: format {meta['format']!r} in a folder saved as {FORMAT!r} (edited)")
    if meta["format"] == FORMAT:
        missing = {f"{name}.npy" for name, _ in ARRAYS} - set(digests)
        if missing:
            raise ValueError(f"{meta_path}: sha256 lacks {sorted(missing)} (every array of a {FORMAT} is hashed)")
        if meta.get("meta_sha256") != meta_digest(meta):
            raise ValueError(f"{meta_path}: its keys do not match the meta_sha256 recorded in it (edited or corrupted)")
    return meta


def is_saved_index(folder: Path) -> bool:
    """Whether `folder` is an index saved before folders carried csrv2's marker: an index.json of ours."""
    try:
        meta = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") in (FORMAT, LEGACY_FORMAT)


def verify_postings(path: Path, offsets: np.ndarray, doc_ids: np.ndarray, values: np.ndarray, n_docs: int) -> None:
    """What the kernels assume of the postings (offsets are checked by the caller), each named with its file: doc
    ids in [0, n_docs), strictly rising within each posting list (the block walk and the zero-score merge rely on
    it), finite values. O(nnz), with a (nnz,) bool temporary."""
    nnz = doc_ids.shape[0]
    if nnz and (int(doc_ids.min()) < 0 or int(doc_ids.max()) >= n_docs):
        raise ValueError(f"{path / 'doc_ids.npy'}: document ids must lie in [0, n_docs={n_docs})")
    if nnz > 1:
        falls = np.flatnonzero(doc_ids[1:] <= doc_ids[:-1]) + 1  # positions whose id does not rise from the last
        inside = falls[~np.isin(falls, offsets)]  # a list's first posting may fall below the previous list's last
        if len(inside):
            at = int(inside[0])
            latent = int(np.searchsorted(offsets, at, side="right")) - 1
            raise ValueError(
                f"{path / 'doc_ids.npy'}: the posting list of latent {latent} is not strictly rising at position {at} "
                f"(doc id {int(doc_ids[at - 1])} then {int(doc_ids[at])})"
            )
    if nnz and not np.isfinite(values).all():
        raise ValueError(f"{path / 'values.npy'}: holds NaN or inf")
