"""The retrieval benchmark's parts on small synthetic data: every peer against brute force `Q @ Dᵀ`, DenseIndex,
the strict BenchConfig, text loading, the report, and one whole run with a stand-in backbone (no network)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from csrv2.cli import find_config
from csrv2.config import strict
from csrv2.config.strict import ConfigError
from csrv2.experiments.bench import peers
from csrv2.experiments.bench import report as bench_report
from csrv2.experiments.bench import retrieval as bench
from csrv2.experiments.bench.scale import ScaleConfig
from csrv2.experiments.measure import measure_search, same_scores, skew_stats
from csrv2.experiments.table import cell
from csrv2.head.codes import SparseCodes
from csrv2.index.dense import DenseIndex
from csrv2.index.sparse_index import SparseIndex

HAVE_FAISS = importlib.util.find_spec("faiss") is not None
HAVE_ST = importlib.util.find_spec("sentence_transformers") is not None
HAVE_QDRANT = importlib.util.find_spec("qdrant_client") is not None
CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "bench").glob("*.yaml"))


def random_codes(rng, n: int, dim: int, k: int) -> SparseCodes:
    """n unit-norm codes with k distinct latents each and positive values (what a ReLU head gives)."""
    idx = np.stack([rng.choice(dim, k, replace=False) for _ in range(n)])
    return SparseCodes(torch.from_numpy(idx), torch.from_numpy(rng.uniform(0.1, 1, (n, k))).float(), dim).normalized()


def brute_force(db: np.ndarray, q: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Q, N) float64 products rounded to float32; top scores and ids ordered by score, then lower id."""
    full = (q.astype(np.float64) @ db.astype(np.float64).T).astype(np.float32)
    ids = np.stack([np.lexsort((np.arange(len(row)), -row))[:top] for row in full])
    return np.take_along_axis(full, ids, 1), ids, full


@pytest.fixture(scope="module")
def sparse_data():
    """A database of 300 codes whose last 60 repeat the first 60 (exact ties, as resampling makes), 20 queries,
    and one query whose only latent no document uses (every document scores 0)."""
    rng = np.random.default_rng(0)
    codes = random_codes(rng, 260, 24, 4)  # latents 24 and 25 of the 26 stay unused
    db = SparseCodes(
        torch.cat([codes.indices[:240], codes.indices[:60]]), torch.cat([codes.values[:240], codes.values[:60]]), 26
    )
    # The last query's only active latent is 25 (the other slots hold zeros: inactive).
    q_idx = torch.cat([codes.indices[240:], torch.tensor([[25, 0, 1, 2]])])
    q_val = torch.cat([codes.values[240:], torch.tensor([[1.0, 0.0, 0.0, 0.0]])])
    return db, SparseCodes(q_idx, q_val, 26)


SPARSE = [peers.SparseIndexPeer, peers.ScipyPeer, peers.TorchSparsePeer, peers.STSparsePeer, peers.QdrantLocalPeer]


@pytest.mark.parametrize("cls", SPARSE, ids=[c.name for c in SPARSE])
def test_sparse_peer_equals_brute_force(cls, sparse_data):
    if cls is peers.STSparsePeer and not HAVE_ST:
        pytest.skip("sentence-transformers is not installed")
    if cls is peers.QdrantLocalPeer and not HAVE_QDRANT:
        pytest.skip("qdrant-client is not installed")
    db, q = sparse_data
    exp_s, exp_i, full = brute_force(db.to_dense().numpy(), q.to_dense().numpy(), 10)
    assert ((full[:-1] > 0).sum(1) >= 10).all()  # every real query has ≥ 10 candidates: no padding there
    kept = [t.clone() for t in (db.indices, db.values, q.indices, q.values)]
    peer = cls(db)
    scores, ids = peer.search(peer.prepare(q), 10)
    for before, after in zip(kept, (db.indices, db.values, q.indices, q.values)):
        assert torch.equal(before, after)  # no peer rewrites the codes it is given
    assert scores.shape == ids.shape == (len(q), 10) and scores.dtype == np.float32 and ids.dtype == np.int64
    real = slice(0, len(q) - 1)
    if peer.ties_by_lower_id:
        np.testing.assert_array_equal(ids[real], exp_i[real])
    else:  # any order among equal scores: the scores, and each returned id's true score, must match
        assert all(len(set(row)) == 10 for row in ids[real].tolist())
        np.testing.assert_allclose(np.take_along_axis(full, ids, 1)[real], exp_s[real], rtol=1e-6)
    np.testing.assert_allclose(scores[real], exp_s[real], rtol=1e-5, atol=1e-7)
    # The lonely query: brute force ranks documents 0…9 at score 0; a candidates-only peer pads with (-inf, -1).
    if peer.zero_scores:
        np.testing.assert_array_equal(scores[-1], np.zeros(10, np.float32))
        if peer.ties_by_lower_id:
            np.testing.assert_array_equal(ids[-1], np.arange(10))
    else:
        assert np.isneginf(scores[-1]).all() and (ids[-1] == -1).all()
    assert same_scores(scores, exp_s)  # the benchmark's exactness check: −inf padding counts as score 0
    assert not same_scores(scores[:, ::-1], exp_s)
    assert peer.bytes_per_vector() > 0


def test_scipy_keeps_lower_id_among_ties_at_the_cut():
    """Five documents tie for the 2 places left: the lowest ids must win, whatever argpartition picks."""
    db = SparseCodes(torch.tensor([[0]] * 8), torch.tensor([[2.0], [3.0]] + [[1.0]] * 6), 2)
    peer = peers.ScipyPeer(db)
    scores, ids = peer.search(peer.prepare(SparseCodes(torch.tensor([[0]]), torch.tensor([[1.0]]), 2)), 4)
    np.testing.assert_array_equal(ids, [[1, 0, 2, 3]])
    np.testing.assert_array_equal(scores, [[3.0, 2.0, 1.0, 1.0]])


@pytest.mark.skipif(not HAVE_FAISS, reason="faiss is not installed")
def test_faiss_flat_equals_brute_force():
    rng = np.random.default_rng(1)
    db = rng.standard_normal((200, 16)).astype(np.float32)
    db[150:] = db[:50]  # exact ties
    q = rng.standard_normal((12, 16)).astype(np.float32)
    exp_s, _, full = brute_force(db, q, 10)
    peer = peers.FaissFlatPeer(db)
    scores, ids = peer.search(peer.prepare(q), 10)
    np.testing.assert_allclose(scores, exp_s, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.take_along_axis(full, ids, 1), exp_s, rtol=1e-5, atol=1e-5)
    assert peer.bytes_per_vector() == 64


def test_dense_index_equals_brute_force_across_blocks(monkeypatch):
    """Database blocks of 37 rows and query blocks of 7 exercise the merge; duplicates tie, lower id first."""
    monkeypatch.setattr(DenseIndex, "ROWS_PER_BLOCK", 37)
    rng = np.random.default_rng(2)
    db = rng.standard_normal((300, 8)).astype(np.float32)
    db /= np.linalg.norm(db, axis=1, keepdims=True)  # unit rows: a query equal to a row finds it (and its copy) first
    db[200:260] = db[:60]
    q = np.concatenate([db[:5], rng.standard_normal((20, 8)).astype(np.float32)])
    exp_s, exp_i, _ = brute_force(db, q, 10)
    scores, ids = DenseIndex(db).search(q, top=10, q_block=7)
    np.testing.assert_array_equal(ids, exp_i)
    np.testing.assert_array_equal(scores, exp_s)
    assert (ids[:5, :2] == np.c_[np.arange(5), np.arange(200, 205)]).all()  # each query's own row, then its copy
    small_s, small_i = DenseIndex(db[:3]).search(q[:2], top=5)  # fewer vectors than top: padded
    assert (small_i[:, 3:] == -1).all() and np.isneginf(small_s[:, 3:]).all()
    np.testing.assert_array_equal(small_i[:, :3], brute_force(db[:3], q[:2], 3)[1])
    with pytest.raises(ValueError, match="queries"):
        DenseIndex(db).search(q[:, :4])


def test_measure_search_returns_the_batch_answer(sparse_data):
    db, q = sparse_data
    peer = peers.SparseIndexPeer(db)
    record, times, (scores, ids) = measure_search(peer, q, 5, 8, 10)
    assert times.shape == (5,) and record["n_single"] == 5 and record["n_batch"] == 8 and record["qps"] > 0
    np.testing.assert_array_equal(ids, peer.search(q[:8], 10)[1])


def test_skew_stats_uniform_and_skewed():
    uniform = SparseIndex.build(SparseCodes(torch.arange(8).reshape(4, 2), torch.ones(4, 2), 8))
    assert skew_stats(uniform)["inflation"] == pytest.approx(1.0)
    skewed = SparseIndex.build(SparseCodes(torch.tensor([[0, 1], [0, 2], [0, 3], [0, 4]]), torch.ones(4, 2), 8))
    stats = skew_stats(skewed)
    # p = (4/8, 1/8 ×4): h Σp² = 8 (1/4 + 4/64) = 2.5; 3 of 8 latents never used; 2 non-zeros per code.
    assert stats["inflation"] == pytest.approx(2.5) and stats["dead_fraction"] == pytest.approx(3 / 8)
    assert stats["nnz_per_code"] == 2


# -- config -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_bench_configs_load(path):
    if "engines" in strict.read_yaml(path):  # the engines benchmark (tests/experiments/test_engines.py)
        from csrv2.experiments.bench.engines import EnginesConfig

        assert EnginesConfig.from_yaml(path).bench_config().base.train.epochs == 5
        return
    if "stages" in strict.read_yaml(path):  # the scale benchmark (csrv2 bench dispatches on `stages`)
        config = ScaleConfig.from_yaml(path)
        bench.BenchConfig.from_yaml(find_config(config.bench_config))  # the retrieval config it takes data from
        return
    config = bench.BenchConfig.from_yaml(path)
    assert config.base.train.epochs == 5 and config.base.train.device == "cpu"  # the benchmark's defaults


def test_bench_config_refuses_what_it_cannot_use(tmp_path):
    ok = {"texts": ["a.jsonl"]}
    cases = [
        ({**ok, "methods": ["sparse_index", "annoy"]}, "annoy"),
        ({**ok, "sizez": [10]}, "sizez"),
        ({**ok, "base": {"train": {"lrr": 1e-3}}}, "base.train.lrr"),
        ({**ok, "base": {"train": {"objective": "mrl"}}}, "objective=mrl"),
        ({**ok, "base": {"data": {"task": "r8"}}}, "base.data"),
        ({**ok, "mrl_dims": [3, 8]}, r"\[3\]"),
        ({**ok, "ks": [0]}, "ks"),
        ({**ok, "batch_queries": 0}, "batch_queries"),
        ({"texts": []}, "texts"),
        ({**ok, "base": {"head": {"hidden": 16}}, "ks": [8]}, "k_start|hidden"),
    ]
    for raw, named in cases:
        with pytest.raises(ConfigError, match=named):
            bench.BenchConfig.from_dict(raw)
    path = tmp_path / "b.yaml"
    path.write_text("texts: [a.jsonl]\ntop: 5\ntop: 6\n")
    with pytest.raises(ConfigError, match=r"b\.yaml.*'top' appears twice"):
        bench.BenchConfig.from_yaml(path)


def test_bench_config_overrides_keep_the_benchmark_defaults(tmp_path):
    path = tmp_path / "b.yaml"
    path.write_text("texts: [a.jsonl]\nbase:\n  train:\n    lr: 1e-3\n")
    config = bench.BenchConfig.from_yaml(path, ["sizes=[1000]", "base.head.hidden=64"])
    assert config.sizes == [1000] and config.base.train.lr == 1e-3 and config.base.head.hidden == 64
    assert config.base.train.epochs == 5 and config.base.backbone.device == "cpu"
    assert (
        bench.BenchConfig().base.to_dict() == bench.BenchConfig.from_dict({"texts": ["a.jsonl"]}).base.to_dict()
    )  # the dataclass default and a YAML without `base` agree
    two, mrl = config.head_config(2, tmp_path / "k2"), config.head_config(None, tmp_path / "mrl")
    assert (two.head.k, two.train.k_start, two.output_dir) == (2, 16, str(tmp_path / "k2"))  # clipped to hidden/4
    assert config.head_config(32, tmp_path).train.k_start == 32 and mrl.train.objective == "mrl"


def test_load_texts(tmp_path):
    (tmp_path / "a.jsonl").write_text(
        "\n".join(json.dumps(r) for r in [{"text": "x  y", "label": 3}, {"text": "z", "label": 3}, {"text": "x y"}])
    )
    (tmp_path / "b.jsonl").write_text(
        "\n".join(json.dumps(r) for r in [{"text": "w", "label": 3}, {"text": " "}, {"text": "v"}, {"text": "u"}])
    )
    config = bench.BenchConfig.from_dict({"texts": ["a.jsonl", "b.jsonl"], "data_dir": str(tmp_path)})
    data = bench.load_texts(config)
    by_text = {t: (int(c), bool(m)) for t, c, m in zip(data.texts, data.labels, data.labelled)}
    assert set(by_text) == {"x y", "z", "w", "v", "u"}  # whitespace normalised, empty and repeated texts dropped
    assert by_text["x y"][0] == by_text["z"][0] != by_text["w"][0]  # label 3 of another file is another class
    assert by_text["x y"][1] and not by_text["v"][1] and by_text["v"][0] != by_text["u"][0]
    capped = bench.BenchConfig.from_dict({"texts": config.texts, "data_dir": str(tmp_path), "max_texts": 2})
    assert bench.load_texts(capped).texts == data.texts[:2]  # the same shuffle, then the cap
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        bench.load_texts(bench.BenchConfig.from_dict({"texts": ["nope.jsonl"], "data_dir": str(tmp_path)}))


# -- report -----------------------------------------------------------------------------------------------------------
def cells(markdown: str, first: str) -> list[str]:
    """The cells of the first table row whose first cell is `first`."""
    for line in markdown.splitlines():
        parts = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and parts[0] == first:
            return parts
    raise AssertionError(f"no row {first!r}")


def fake_results() -> dict:
    config = bench.BenchConfig.from_dict({"texts": ["a.jsonl"], "ks": [2, 8], "mrl_dims": [4, 16], "sizes": [1000]})
    timing = {"median_us": 40.0, "p99_us": 210.0, "qps": 30000.0, "bytes_per_vector": 15.1, "build_s": 0.002}
    skew = {"nnz_per_code": 1.87, "dead_fraction": 0.595, "inflation": 23.4, "top1pct_share": 0.38, "max_list": 8945,
            "mean_list": 122.0}  # fmt: skip
    sparse = {**timing, "fit_fixed_us": 21.2, "fit_ns_per_posting": 4.26, "postings_touched_mean": 5372.0, "skew": skew}
    size = {
        "sparse_index_k2": sparse,
        "sparse_index_k8": {
            **sparse,
            "median_us": 100.0,
            "qps": 7000.0,
            "save_s": 0.5,
            "load_mmap_s": 0.001,
            "first_query_after_load_s": 0.002,
        },  # fmt: skip
        "scipy_k2": {**timing, "median_us": 144.0, "qps": 7500.0, "same_scores_as_exact": True},
        "torch_sparse_k8": {**timing, "median_us": 2000.0, "qps": 400.0, "same_scores_as_exact": False},
        "faiss_flat": {
            **timing,
            "median_us": 50000.0,
            "qps": 60.0,
            "bytes_per_vector": 1536,
            "same_scores_as_exact": True,
        },
        "faiss_mrl_4": {**timing, "median_us": 160.0, "qps": 1800.0, "same_scores_as_exact": True},
        "faiss_mrl_16": {**timing, "median_us": 270.0, "qps": 1700.0, "same_scores_as_exact": True},
    }
    quality = {
        "sparse_k2": {"recall_dense": 0.0558, "label_precision": 0.848},
        "sparse_k8": {"recall_dense": 0.103, "label_precision": 0.878},
        "mrl_4": {"recall_dense": 0.013, "label_precision": 0.332},
        "mrl_16": {"recall_dense": 0.181, "label_precision": 0.803},
        "dense": {"recall_dense": 1.0, "label_precision": 0.824},
    }
    return {
        "machine": {"cpu": "Test CPU", "cores": 2, "ram_gib": 24.0, "platform": "Linux-x"},
        "versions": {"numpy": "2.0", "faiss-cpu": None},
        "command": "csrv2 bench x",
        "config": dataclasses.asdict(config),
        "n_texts": 5000,
        "dim": 384,
        "quality": quality,
        "training": {"k2": {"seconds": 100.0, "samples": 200000, "epochs": 5}, "mrl": None},
        "overhead": {
            "texts": 512,
            "backbone_ms_per_text": 4.0,
            "st_backbone_ms_per_text": 4.5,
            "st_max_abs_diff": 1.2e-6,
            "head_k2_ms_per_text": 0.01,
            "head_k2_overhead_pct": 0.25,
        },  # fmt: skip
        "read_bandwidth_gbs": 10.0,
        "sizes": {"1000": size},
    }


def test_report_prints_the_numbers_it_was_given(tmp_path):
    results = fake_results()
    md = bench_report.report_markdown(results)
    f = cell
    assert "Test CPU, 2 cores, 24 GiB RAM" in md and "numpy 2.0" in md and "faiss-cpu" not in md
    row = cells(md, "sparse k=2")
    assert row[1:4] == [f(0.0558), f(0.848), "16 / > 16"]  # recall 0.0558 ≤ MRL 16's 0.181; label 0.848 > 0.803
    assert cells(md, "sparse k=8")[3] == "16 / > 16" and cells(md, "dense 384")[1:3] == ["1", f(0.824)]
    lat = cells(md, "2")  # the latency row of k = 2 (the first row whose first cell is "2")
    assert lat[1:4] == ["40", "210", "5,372"] and lat[4] == "21.2 + 4.26"
    assert lat[5] == f(5372 * 8 / (10.0 * 1e3)) and lat[6] == f(144 / 40) and lat[9] == f(50000 / 40)
    assert lat[7] == lat[8] == "—" and lat[11] == "— (none)" and lat[12] == f"{f(270 / 40)} (16 dims)"
    assert cells(md, "scipy k=2")[1:] == ["7,500", f(30000 / 7500), "15.1", f(0.002), "yes"]
    assert cells(md, "torch_sparse k=8")[2:] == [f(7000 / 400), "15.1", f(0.002), "**no**"]
    assert cells(md, "sparse_index k=8")[-1] == "(reference)"
    assert cells(md, "faiss_flat")[1:4] == ["60", f"{f(30000 / 60)} (vs k=2)", "1,536"]
    assert cells(md, "k2")[1:] == ["5", "100.0", "2,000"] and "| mrl |" not in md  # mrl: no training record
    assert "4.000 ms per text" in md and "4.500 ms per text" in md and "1.2e-06 per coordinate" in md
    assert "save 0.50 s" in md and "1.00 ms" in md and "10.0 GB/s" in md
    assert [line for line in md.splitlines() if line.startswith("| 8 | 1.87 |")] == [
        "| 8 | 1.87 | 59.5 % | 23.4 | 38.0 % | 8,945 | 122 |"
    ]

    page = tmp_path / "benchmarks.md"
    page.write_text(f"# Top\n\nintro\n\n{bench_report.BEGIN}\nold tables\n{bench_report.END}\n\nafter text\n")
    bench_report.write_report(results, page)
    bench_report.write_report(results, page)  # a rerun replaces the tables, never stacks them
    text = page.read_text()
    assert text.startswith("# Top\n\nintro\n\n") and text.endswith("\nafter text\n") and "old tables" not in text
    assert text.count(bench_report.BEGIN) == 1 and md in text


def test_qdrant_local_is_on_request_and_gets_a_column_only_when_measured():
    assert "qdrant_local" in bench.METHODS and "qdrant_local" not in bench.BenchConfig().methods
    config = bench.BenchConfig.from_dict({"texts": ["a.jsonl"], "methods": ["sparse_index", "qdrant_local"]})
    assert config.budget()["qdrant_local"] == (config.slow_latency_queries, config.slow_batch_queries)
    results = fake_results()
    assert "Qdrant local" not in bench_report.report_markdown(results)
    timing = {"median_us": 80000.0, "p99_us": 90000.0, "qps": 12.0, "bytes_per_vector": 15.0, "build_s": 9.0}
    results["sizes"]["1000"]["qdrant_local_k2"] = {**timing, "same_scores_as_exact": True}
    md = bench_report.report_markdown(results)
    assert md.count("Qdrant local ×") == 1 and cells(md, "2")[13] == cell(80000 / 40)
    assert cells(md, "8")[13] == "—"  # measured at k = 2 only
    assert cells(md, "qdrant_local k=2")[1:] == ["12", cell(30000 / 12), "15", "9", "yes"]


# -- a whole run, with random vectors standing in for the backbone -------------------------------------------------
def test_run_end_to_end_with_a_stand_in_backbone(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    rows = [{"text": f"text {i}", "label": int(i % 7)} for i in range(260)] + [{"text": f"lone {i}"} for i in range(40)]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    emb = rng.standard_normal((300, 32)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    calls = []

    def fake_embed(cfg, texts, key, kind="document"):
        calls.append(key)
        return emb[[int(re.sub(r"\D", "", t)) + (260 if t.startswith("lone") else 0) for t in texts]]

    monkeypatch.setattr(bench, "embed_texts", fake_embed)
    monkeypatch.setattr(bench, "encode_overhead", lambda *args: {})
    monkeypatch.setattr(bench, "resolve_model_path", lambda name: "unused")
    methods = ["sparse_index", "scipy", "torch_sparse"] + (["faiss_flat", "faiss_mrl"] if HAVE_FAISS else [])
    methods += ["qdrant_local"] if HAVE_QDRANT else []
    raw = {
        "texts": ["t.jsonl"], "data_dir": str(tmp_path), "n_queries": 20, "sizes": [500], "ks": [2, 4],
        "mrl_dims": [4, 8], "methods": methods, "latency_queries": 5, "slow_latency_queries": 3, "batch_queries": 20,
        "slow_batch_queries": 10, "st_latency_queries": 2, "st_training_steps": 0, "cache_dir": str(tmp_path / "c"),
        "output": str(tmp_path / "bench.md"), "base": {"head": {"hidden": 64}, "train": {"epochs": 1, "batch_size": 32}},
    }  # fmt: skip
    config = bench.BenchConfig.from_dict(raw)
    results = bench.run(config, command="test", log=lambda line: None)
    size = results["sizes"]["500"]
    assert {"sparse_index_k2", "scipy_k4", "torch_sparse_k2"} <= set(size) and calls == ["bench/texts"]
    sparse = ("scipy", "torch_sparse") + (("qdrant_local",) if HAVE_QDRANT else ())
    assert all(size[f"{m}_k{k}"]["same_scores_as_exact"] for m in sparse for k in (2, 4))
    if HAVE_FAISS:
        assert size["faiss_flat"]["same_scores_as_exact"] and size["faiss_mrl_8"]["same_scores_as_exact"]
    assert "load_mmap_s" in size["sparse_index_k4"] and "load_mmap_s" not in size["sparse_index_k2"]
    assert results["quality"]["dense"]["recall_dense"] == 1.0
    assert set(results["training"]) == {"k2", "k4", "mrl"} and results["training"]["k2"]["seconds"] > 0
    saved = json.loads((tmp_path / "c" / "results_bench.json").read_text())
    assert saved["sizes"]["500"]["sparse_index_k2"]["qps"] == size["sparse_index_k2"]["qps"]
    assert bench_report.report_markdown(results) in (tmp_path / "bench.md").read_text()
    again = bench.run(config, command="test", log=lambda line: None)  # heads reused: the training record stays
    assert again["training"] == results["training"]
