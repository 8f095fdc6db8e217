"""The engines benchmark (csrv2 bench --config bench/engines) on small data: every engine installed here answers,
the exact ones with recall 1, the tie-aware recall counts ties at the cut, and one whole run with a stand-in backbone
writes its report. Engines whose package is missing are skipped by the run itself, and named."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from csrv2.config.strict import ConfigError
from csrv2.experiments import measure
from csrv2.experiments.bench import engines
from csrv2.experiments.bench import retrieval as bench
from csrv2.head.codes import SparseCodes


def random_codes(rng, n: int, dim: int, k: int) -> SparseCodes:
    p = rng.zipf(1.5, size=dim).astype(float)  # skewed latent use, like real codes
    p /= p.sum()
    idx = np.stack([rng.choice(dim, k, replace=False, p=p) for _ in range(n)])
    return SparseCodes(torch.from_numpy(idx), torch.from_numpy(rng.uniform(0.1, 1, (n, k))).float(), dim).normalized()


def test_tie_aware_recall():
    db = SparseCodes(torch.tensor([[0], [0], [1], [2]]), torch.tensor([[1.0], [1.0], [0.5], [0.2]]), 3).to_scipy()
    q = SparseCodes(torch.tensor([[0, 1]]), torch.tensor([[1.0, 1.0]]), 3).to_scipy()
    kth = np.array([1.0])  # top 2: docs 0 and 1 tie at 1.0
    assert engines.recall_at(np.array([[1, 0]]), db.astype(np.float64), q.astype(np.float64), kth) == 1.0
    assert engines.recall_at(np.array([[0, 2]]), db.astype(np.float64), q.astype(np.float64), kth) == 0.5
    assert engines.recall_at(np.array([[0, -1]]), db.astype(np.float64), q.astype(np.float64), kth) == 0.5
    # fewer candidates than top: the exact top-th score is 0, a padded slot ties with every non-candidate
    q2 = SparseCodes(torch.tensor([[1]]), torch.tensor([[1.0]]), 3).to_scipy().astype(np.float64)
    assert engines.recall_at(np.array([[2, -1]]), db.astype(np.float64), q2, np.array([0.0])) == 1.0


def test_every_installed_engine_answers_and_the_exact_ones_exactly(tmp_path):
    rng = np.random.default_rng(0)
    db, q = random_codes(rng, 3000, 128, 4), random_codes(rng, 40, 128, 4)
    config = engines.EnginesConfig(texts=["x"], latency_queries=5, batch_queries=40, slow_queries=5)
    names = [e for e in engines.ENGINES if e not in engines.NEEDS or measure.installed(engines.NEEDS[e])]
    out = engines.measure_codes(db, q, config, names, tmp_path, lambda line: None)
    assert set(out) == set(names)
    for name, record in out.items():
        assert "error" not in record, (name, record)
        assert record["median_us"] > 0 and record["index_bytes"] > 0 and record["build_s"] > 0
        if record["exact"]:
            assert record["recall"] == 1.0, name
        assert 0.5 < record["recall"] <= 1.0
    if "seismic_r99" in out:
        assert out["seismic_r99"]["recall"] >= config.target_recall and out["seismic_r99"]["ladder"]
    assert not any(tmp_path.iterdir())  # each engine's files are removed after it


def test_config_refuses_unknown_engines(tmp_path):
    (tmp_path / "e.yaml").write_text("engines: [sparse_index, faiss]\ntexts: [a.jsonl]\n")
    with pytest.raises(ConfigError, match=r"engines: unknown \['faiss'\]"):
        engines.EnginesConfig.from_yaml(tmp_path / "e.yaml")
    (tmp_path / "e.yaml").write_text("engines: [sparse_index]\ntexts: [a.jsonl]\nks: [0]\n")
    with pytest.raises(ConfigError, match="ks"):
        engines.EnginesConfig.from_yaml(tmp_path / "e.yaml")


def test_run_end_to_end_with_a_stand_in_backbone(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    rows = [{"text": f"text {i}", "label": int(i % 7)} for i in range(300)]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    emb = rng.standard_normal((300, 32)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    monkeypatch.setattr(
        bench, "embed_texts", lambda cfg, texts, key, kind="document": emb[[int(re.sub(r"\D", "", t)) for t in texts]]
    )
    raw = (
        f"engines: [sparse_index, seismic, milvus_lite, pisa]\ntexts: [t.jsonl]\ndata_dir: {tmp_path}\nn_queries: 20\n"
        f"sizes: [800]\nks: [2, 4]\nlatency_queries: 5\nbatch_queries: 20\ncache_dir: {tmp_path / 'c'}\n"
        f"output: {tmp_path / 'bench.md'}\nbase: {{head: {{hidden: 64}}, train: {{epochs: 1, batch_size: 32}}}}\n"
    )
    (tmp_path / "e.yaml").write_text(raw)
    config = engines.EnginesConfig.from_yaml(tmp_path / "e.yaml")
    results = engines.run(config, command="test", log=lambda line: None)
    size = results["sizes"]["800"]
    ran = {"sparse_index", "seismic", "milvus_lite", "pisa"} - set(results["skipped"])
    assert {key.rsplit("_k", 1)[0] for key in size} == ran and size["sparse_index_k2"]["recall"] == 1.0
    text = (tmp_path / "bench.md").read_text()
    assert engines.markers(800)[0] in text and "| 2 | **SparseIndex** | yes |" in text
    assert json.loads((tmp_path / "c" / "results_engines.json").read_text())["sizes"]["800"].keys() == size.keys()
    assert not [p for p in (tmp_path / "c").iterdir() if p.name.startswith("engines_")]
