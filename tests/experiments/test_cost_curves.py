"""The scale benchmark's parts (csrv2.experiments.bench.scale) against naive references and hand values.

The full run needs the bench data and hours; here each part runs on small random arrays: the brute-force reference
against SparseIndex, the resampled file against fancy indexing, the memory probe against a known allocation, one
training child in-process, the growth exponents of known power laws, and the report written between its markers."""

import json
import time

import numpy as np
import pytest
import torch

from csrv2.config.strict import ConfigError
from csrv2.experiments.bench import scale as cost_curves
from csrv2.experiments.bench import scale_report as cost_curves_report
from csrv2.experiments.bench.scale import ScaleConfig, brute_force_top, child_train, embedding_file
from csrv2.experiments.measure import AnonPeak, status_mib
from csrv2.files import write_between_markers
from csrv2.head.codes import SparseCodes
from csrv2.index.sparse_index import SparseIndex


def random_codes(n, k, dim=64, seed=0) -> SparseCodes:
    g = torch.Generator().manual_seed(seed)
    idx = torch.stack([torch.randperm(dim, generator=g)[:k] for _ in range(n)])
    return SparseCodes(idx, torch.rand(n, k, generator=g), dim).normalized()


def test_brute_force_top_equals_sparse_index():
    """The naive reference (packed codes only, blocked) and SparseIndex agree on the top scores."""
    db, queries = random_codes(3000, 4), random_codes(12, 4, seed=1)
    want, _ = SparseIndex.build(db).search(queries, top=10)
    got = brute_force_top(db, queries, top=10, block=700)  # blocks that do not divide N
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)


def test_embedding_file_is_the_drawn_rows_and_is_reused(tmp_path):
    emb = np.random.default_rng(0).standard_normal((50, 6)).astype(np.float32)
    pool, rows = np.arange(10, 50), np.random.default_rng(1).integers(0, 40, 130_000)
    path = embedding_file(tmp_path, emb, pool, rows)
    np.testing.assert_array_equal(np.load(path), emb[pool[rows]])
    assert [p.name for p in tmp_path.iterdir()] == ["rows_130000.npy"]  # no .partial left behind
    mtime = path.stat().st_mtime_ns
    assert embedding_file(tmp_path, emb, pool, rows) == path and path.stat().st_mtime_ns == mtime


def test_anon_peak_sees_an_allocation_freed_before_the_block_ends():
    with AnonPeak() as probe:
        before = status_mib("RssAnon")
        block = np.ones(200 * 2**20 // 8)  # 200 MiB, touched
        time.sleep(0.1)  # held while the sampler (every 5 ms) runs: np.ones keeps the GIL while it fills
        del block  # freed inside the block: only the sampler can have seen it
    assert probe.peak >= before + 190


def test_training_child_reads_the_memory_mapped_file(tmp_path):
    x = np.random.default_rng(0).standard_normal((600, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x / np.linalg.norm(x, axis=1, keepdims=True))
    record = child_train(str(tmp_path / "x.npy"), 3)
    assert set(record) == {"load_s", "s_per_step", "rss_before_mib", "peak_rss_mib", "peak_anon_mib"}
    assert record["s_per_step"] > 0 and record["peak_rss_mib"] >= record["rss_before_mib"] > 0


def results_with_power_laws() -> dict:
    """Columns that grow exactly as N^1 (training), N^0.5 (latency) and N^0 (Qdrant: only two sizes)."""
    sizes = {}
    for n in (10_000, 100_000, 1_000_000):
        k2 = {
            "build_s": n * 1e-7,
            "index_mib": n * 8 / 2**20,
            "median_us": 3 * n**0.5,
            "batch_qps": 1e9 / n,
            "exact": True,
        }
        if n <= 100_000:
            k2.update(qdrant_median_us=500.0, qdrant_same=True)
        train = {"epoch_s": n * 1e-3, "peak_anon_mib": 400.0, "peak_rss_mib": 450.0, "load_s": n * 1e-6}
        sizes[str(n)] = {"embed_s_extrapolated": n / 40, "train": train, "k2": k2}
    return {"sizes": sizes, "args": {"ks": [2], "embed_texts": 500}, "machine": {}, "embed_texts_per_s": 40.0}


def test_growth_exponents_of_known_power_laws():
    exps = cost_curves_report.growth_exponents(results_with_power_laws())
    assert exps["train s/epoch"] == pytest.approx(1.0)
    assert exps["query µs k=2"] == pytest.approx(0.5)
    assert exps["batch q/s k=2"] == pytest.approx(-1.0)
    assert exps["Qdrant local query µs k=2"] == pytest.approx(0.0, abs=1e-9)
    assert exps["encode→index s (k=2)"] is None  # never measured
    table = cost_curves_report.table(results_with_power_laws())
    assert "| growth exponent |" in table and "| 1,000,000 |" in table
    assert "equal brute force at every N and k: True" in table


def test_report_goes_between_its_markers_and_keeps_the_rest(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nintro\n\nold text\n")
    write_between_markers(doc, "<!-- a -->", "<!-- /a -->", "first")
    write_between_markers(doc, "<!-- a -->", "<!-- /a -->", "second\n")
    assert doc.read_text() == "# Benchmarks\n\nintro\n\nold text\n\n<!-- a -->\nsecond\n<!-- /a -->\n"


def test_scale_config_refuses_what_it_cannot_run(tmp_path):
    with pytest.raises(ConfigError, match="stages: \\['embed'\\] unknown"):
        ScaleConfig.from_yaml(None, ["stages=[embed]"])
    with pytest.raises(ConfigError, match="must include 2"):
        ScaleConfig.from_yaml(None, ["ks=[8]"])
    results = cost_curves.run(ScaleConfig.from_yaml(None, ["stages=[]", "output=", "plot="]), command="x", log=print)
    assert results == {"command": "x"}
    json.dumps(results)
