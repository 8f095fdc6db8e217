"""Measuring: the machine a figure was taken on, package versions, and timers (one definition each).

machine()                  {"cpu": ..., "cores": 2, "ram_gib": 24, ...} plus `describe_machine()` as one line
time_single(fn, n)         per-call latency median / p99 in µs;  time_batch(fn, n_queries)  best-of queries/s
seconds, out = timed(fn)   one call's wall-clock seconds and result
measure_search(peer, ...)  latency, queries/s and answers of one search method; same_scores(a, b) its exactness
skew_stats(index), top_quality(found, truth, ...)   latent-usage skew of an index; recall and label precision
save_load_times(index, ...)                          seconds to save, open memory-mapped and first-query an index
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from csrv2.evaluation.usage import usage_figures
from csrv2.index.sparse_index import SparseIndex
from csrv2.runs.provenance import package_versions

PACKAGES = ("numpy", "scipy", "torch", "transformers", "faiss-cpu", "sentence-transformers", "numba")


def machine() -> dict:
    """CPU model, cores, RAM, OS, Python, torch and its thread count: what a timing depends on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        ram_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        ram_gib = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": ram_gib,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def describe_machine(info: dict | None = None) -> str:
    """One line, e.g. "Intel Xeon …, 2 cores, 24 GiB RAM, Linux-6.1-x86_64"."""
    info = info or machine()
    ram = f"{info['ram_gib']:.0f} GiB RAM" if info.get("ram_gib") is not None else "RAM unknown"
    return f"{info['cpu']}, {info['cores']} cores, {ram}, {info['platform']}"


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each package (None when absent): csrv2.runs.provenance.package_versions, the one definition."""
    return package_versions(packages)


def installed(module: str) -> bool:
    """Whether an optional package can be imported (without importing it)."""
    return importlib.util.find_spec(module) is not None


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(wall-clock seconds of one call, its result)."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def time_single(fn: Callable[[int], Any], n: int) -> tuple[dict, np.ndarray]:
    """Call fn(i) for i < n one at a time after one warm-up call: ({median_us, p99_us, n_single}, times (n,) s)."""
    fn(0)
    times = np.empty(n)
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        times[i] = time.perf_counter() - start
    summary = {
        "median_us": float(np.median(times) * 1e6),
        "p99_us": float(np.percentile(times, 99) * 1e6),
        "n_single": n,
    }
    return summary, times


def time_batch(fn: Callable[[], Any], n_queries: int, max_repeats: int = 3) -> dict:
    """Queries/s of one call answering n_queries: the best of up to max_repeats calls, stopping once a call takes
    over 2 s (on a shared machine the best run is the one least disturbed by other processes)."""
    best = float("inf")
    for _ in range(max_repeats):
        best = min(best, timed(fn)[0])
        if best > 2.0:
            break
    return {"qps": n_queries / best, "n_batch": n_queries}


def read_bandwidth(mb: int = 512, repeats: int = 5) -> float:
    """Single-thread streaming read bandwidth in GB/s: the best of `repeats` sums over an mb-MiB array."""
    data = np.ones(mb * 2**20 // 8, np.int64)
    best = min(timed(data.sum)[0] for _ in range(repeats))
    return data.nbytes / best / 1e9


# -- retrieval: a search method's speed and answers, a database's statistics -------------------------------------------
def skew_stats(index) -> dict:
    """Latent-usage skew of a csrv2.SparseIndex: how much longer the lists a query touches are than under uniform use.

    A query touching latent l reads |postings(l)|; if latents are used in proportion to their frequency
    p_l = |postings(l)| / nnz, a query's expected list length is nnz · Σ p_l², against nnz / h for uniform use.
    inflation = h · Σ p_l² (1 = uniform). Also: dead latents (empty lists), the top-1 % lists' share of postings
    (csrv2.evaluation.usage.usage_figures of the list lengths).
    """
    lengths = index.posting_lengths().astype(np.float64)  # (h,)
    figures = usage_figures(lengths)
    return {
        "nnz_per_code": index.nnz / max(len(index), 1),
        "dead_fraction": figures["dead_pct"] / 100,
        "inflation": figures["inflation"],
        "top1pct_share": figures["top1pct_share"],
        "max_list": int(lengths.max()),
        "mean_list": float(lengths.mean()),
    }


def top_quality(found, truth, labels_db, labels_q, labelled_q) -> dict:
    """found, truth (Q, top) ids into the database (−1: none) → recall@top of `truth`, and label precision@top: the
    share of found neighbours in the query's class, over labelled queries whose class has database members."""
    recall = np.mean([len(set(f) & set(t) - {-1}) / len(t) for f, t in zip(found.tolist(), truth.tolist())])
    counted = labelled_q & np.isin(labels_q, labels_db)  # (Q,)
    same = (found >= 0) & (labels_db[np.clip(found, 0, None)] == labels_q[:, None])  # (Q, top)
    return {"recall_dense": float(recall), "label_precision": float(same[counted].mean()) if counted.any() else None}


def measure_search(peer, queries, n_single: int, n_batch: int, top: int) -> tuple[dict, np.ndarray, tuple]:
    """Latency of n_single one-query calls and queries/s of one n_batch call of a search object shaped like the
    peers of csrv2.experiments.bench.peers (prepare, search, bytes_per_vector) → (record, per-query seconds (n_single,),
    the batch call's (scores, ids)). Queries are put in the peer's own form before any timing."""
    singles = [peer.prepare(queries[i : i + 1]) for i in range(n_single)]
    batch = peer.prepare(queries[:n_batch])
    single, times = time_single(lambda i: peer.search(singles[i], top), n_single)
    found: list = []
    speed = time_batch(lambda: found.append(peer.search(batch, top)), n_batch)
    record = {"bytes_per_vector": peer.bytes_per_vector(), **single, **speed}
    return record, times, found[-1]


def same_scores(scores: np.ndarray, reference: np.ndarray) -> bool:
    """Equal top scores (ids may differ inside ties); a padded −inf counts as the 0 of a document sharing no
    latent (a peer that returns only candidates pads where brute force has zeros)."""
    n = len(scores)
    return bool(np.allclose(np.where(np.isfinite(scores), scores, 0), reference[:n], rtol=1e-5, atol=1e-6))


def save_load_times(index: SparseIndex, few_codes, query, folder: Path, top: int) -> dict:
    """Seconds to save a SparseIndex into `folder`, open it memory-mapped, and answer its first (cold-page) query.

    A tiny index of `few_codes` is saved and searched first, so numba compiles (or loads from its cache) the
    kernels for read-only arrays outside the timing. The folder is removed afterwards."""
    SparseIndex.build(few_codes).save(folder)
    SparseIndex.load(folder, mmap=True).search(query, top=top)
    save_s, _ = timed(lambda: index.save(folder))
    verified_s, _ = timed(lambda: SparseIndex.load(folder, mmap=True))  # reads every file once: sha256 + ranges
    load_s, loaded = timed(lambda: SparseIndex.load(folder, mmap=True, verify=False))  # O(1): maps, reads nothing
    first_s, _ = timed(lambda: loaded.search(query, top=top))
    shutil.rmtree(folder, ignore_errors=True)
    return {"save_s": save_s, "load_mmap_s": load_s, "load_verified_s": verified_s, "first_query_after_load_s": first_s}


# -- memory of a process ------------------------------------------------------------------------------------------
def status_mib(field: str) -> float:
    """A /proc/self/status field in MiB (VmHWM: peak resident set; RssAnon: resident anonymous memory now). Not
    getrusage's ru_maxrss: Linux keeps it across exec, so a child started by a big parent reports the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 2**10
    raise RuntimeError(f"/proc/self/status has no {field} (Linux only)")


class AnonPeak:
    """Highest RssAnon seen by a thread sampling every 5 ms while the block runs: memory the process holds itself,
    without the clean file pages of a memory map (VmHWM counts those, and the kernel can drop them at any time)."""

    def __enter__(self):
        self.peak, self._stop = status_mib("RssAnon"), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, status_mib("RssAnon"))

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, status_mib("RssAnon"))
