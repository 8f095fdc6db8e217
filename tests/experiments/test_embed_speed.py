"""csrv2.experiments.bench.embed_speed on a few texts: every cell has every installed path, tokenizing alone and the
load averages; outputs are compared with torch's; the summary names what did not run."""

import importlib.util

import pytest

from csrv2.experiments.bench import embed_speed


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="needs onnxruntime")
def test_embed_speed_cells_and_summary(minilm, monkeypatch):
    texts = {"a": ["a short title", "hi"] * 3, "b": ["A longer text about markets, rates and banks. " * 8] * 5}
    monkeypatch.setattr(embed_speed, "sample_texts", lambda task, n: texts[task][:n])
    result = embed_speed.run_embed_speed(
        texts=6,
        threads=(1,),
        batch_sizes=(4,),
        rounds=2,
        lengths={"short": "a", "long": "b"},
        paths=["torch", "onnx", "torch-bf16"],
        log=lambda text: None,
    )
    assert [(c["length"], c["texts"], c["batch_size"], c["threads"]) for c in result["cells"]] == [
        ("short", 6, 4, 1),
        ("long", 5, 4, 1),
    ]
    for cell in result["cells"]:
        assert set(cell["paths"]) == {"torch", "onnx", "torch-bf16", "tokenize"}
        assert cell["paths"]["torch"]["over_torch"] == 1.0 and len(cell["paths"]["onnx"]["seconds"]) == 2
        assert cell["paths"]["onnx"]["max_abs_diff_vs_torch"] <= 1e-5
        assert cell["paths"]["torch-bf16"]["min_cosine_vs_torch"] > 0.999
        assert len(cell["load_before"].split()) == 3
    assert set(result["breakdown"]) == {"short", "long"}
    shares = result["breakdown"]["long"]["shares"]
    assert shares["attention"] > 0 and shares["ffn"] > 0 and sum(shares.values()) >= 0.99
    table = embed_speed.format(result)
    assert "| onnx | " in table and "short b4 t1" in table and "Where torch's time goes" in table
