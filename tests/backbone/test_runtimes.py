"""backbone.runtime onnx-fused, openvino, openvino-bf16, ct2 and ct2-int8 (csrv2.backbone.runtimes): all-MiniLM-L6-v2
through each against torch on real texts (the exact ones within 1e-5 per coordinate, the others with their measured
closeness); each converted file cached, keyed by the weights and written atomically (a tiny random BERT); the errors.
Each runtime's tests skip when its package is not installed."""

import importlib.util
import sys
import typing

import numpy as np
import pytest
import torch

from csrv2.backbone import ct2_runtime, embeddings, onnx_runtime, ort_fused, runtimes
from csrv2.backbone.encoders import load_backbone, runtime_device
from csrv2.config.run_config import BackboneConfig
from tests.backbone.test_onnx_runtime import real_texts, tiny_bert


def needs(runtime: str):
    module = runtimes.RUNTIMES[runtime].module
    return pytest.mark.skipif(
        importlib.util.find_spec(module) is None,
        reason=f"needs {module}: pip install 'csrv2[{runtimes.RUNTIMES[runtime].extra}]'",
    )


EXACT = ["onnx-fused", "openvino", "ct2"]


@pytest.fixture(scope="module")
def torch_reference(minilm):
    cfg = BackboneConfig(device="cpu", batch_size=16, threads=1, query_prompt="query: ")
    encoder = load_backbone(cfg)
    texts = real_texts()
    return cfg, texts, {kind: encoder.encode(texts, kind=kind, progress=False) for kind in ("document", "query")}


@pytest.mark.parametrize("runtime", [pytest.param(r, marks=needs(r)) for r in EXACT])
def test_exact_runtimes_match_torch_on_real_texts(torch_reference, runtime):
    """Measured on these 30 texts: max |Δ| 1.9e-7 to 3.0e-7 per coordinate for each of the three."""
    cfg, texts, ref = torch_reference
    encoder = load_backbone(BackboneConfig(**{**vars(cfg), "runtime": runtime}))
    assert runtimes.RUNTIMES[runtime].exact
    for kind in ("document", "query"):
        ours = encoder.encode(texts, kind=kind, progress=False)
        assert ours.shape == ref[kind].shape == (len(texts), 384) and ours.dtype == np.float32
        assert np.abs(ours - ref[kind]).max() <= 1e-5, np.abs(ours - ref[kind]).max()


@pytest.mark.parametrize(
    "runtime, lowest, mean",
    # measured on these 30 texts: openvino-bf16 lowest 0.99997, mean 0.99999 (on a CPU without bf16 it runs f32:
    # cosine 1); ct2-int8 lowest 0.9888 ("hi" as a document), mean 0.997
    [
        pytest.param("openvino-bf16", 0.9995, 0.9999, marks=needs("openvino-bf16")),
        pytest.param("ct2-int8", 0.98, 0.995, marks=needs("ct2-int8")),
    ],
)
def test_low_precision_runtimes_are_close_to_torch(torch_reference, runtime, lowest, mean):
    cfg, texts, ref = torch_reference
    encoder = load_backbone(BackboneConfig(**{**vars(cfg), "runtime": runtime}))
    assert not runtimes.RUNTIMES[runtime].exact
    for kind in ("document", "query"):
        ours = encoder.encode(texts, kind=kind, progress=False)
        cosine = (ours * ref[kind]).sum(axis=1)  # both rows unit length
        assert cosine.min() >= lowest and cosine.mean() >= mean, (cosine.min(), cosine.mean())


NAMES = ["input_ids", "attention_mask", "token_type_ids"]


def tiny_batch(seed: int = 0) -> tuple[dict, torch.Tensor]:
    torch.manual_seed(seed)
    mask = torch.tensor([[1] * 9, [1] * 5 + [0] * 4, [1] * 2 + [0] * 7])  # (3, 9): two rows right-padded
    batch = {"input_ids": torch.randint(5, 120, (3, 9)) * mask, "attention_mask": mask}
    batch["token_type_ids"] = torch.zeros_like(mask)
    return batch, mask.bool()


def tiny_tokenizer(tmp_path):
    """A BERT tokenizer whose vocabulary is the tiny model's 120 ids (ct2's converter writes it beside the weights)."""
    from transformers import BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(115)]
    (tmp_path / "vocab.txt").write_text("\n".join(words))
    return BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"))


def check_cached(tmp_path, monkeypatch, make, build_name: str, module):
    """make(model) twice for the same weights builds once (the second reads the cache), leaves no partial file,
    equals torch on the real tokens of a padded batch; other weights build again, into a folder of their own."""
    monkeypatch.setattr(onnx_runtime.paths, "home", lambda: tmp_path / "home")
    built = []
    real = getattr(module, build_name)
    monkeypatch.setattr(module, build_name, lambda *a: built.append(a[-1]) or real(*a))
    model = tiny_bert(0)
    first = make(model)
    second = make(model)
    assert built == [first.path] and second.path == first.path
    assert not [p for p in first.path.parent.iterdir() if p.name.startswith(".")]  # no temporary file left
    batch, real_tokens = tiny_batch()
    with torch.no_grad():
        ref = model(**batch).last_hidden_state
    assert torch.allclose(second(batch)[real_tokens], ref[real_tokens], atol=1e-5)
    third = make(tiny_bert(1))
    assert built == [first.path, third.path] and third.path.parent != first.path.parent


@needs("onnx-fused")
def test_fused_graph_is_cached_keyed_by_weights_and_fused(tmp_path, monkeypatch):
    check_cached(tmp_path, monkeypatch, lambda m: ort_fused.FusedOnnxEncoder(m, NAMES, threads=1), "fuse", ort_fused)
    model = tiny_bert(0)
    counts = ort_fused.fuse(model, NAMES, tmp_path / "again.onnx")
    assert counts["Attention"] == 2 and counts["SkipLayerNormalization"] == 4 and counts["EmbedLayerNormalization"] == 1
    assert model.config._attn_implementation != "eager"  # the model's own attention restored after the export
    assert not any(module.training for module in model.modules())


@needs("ct2")
def test_ct2_conversion_is_cached_and_keyed_by_weights(tmp_path, monkeypatch):
    tokenizer = tiny_tokenizer(tmp_path)
    check_cached(
        tmp_path, monkeypatch, lambda m: ct2_runtime.Ct2Encoder(m, tokenizer, NAMES, threads=1), "convert", ct2_runtime
    )


@needs("openvino")
def test_openvino_reads_the_cached_export(tmp_path, monkeypatch):
    from csrv2.backbone import openvino_runtime

    check_cached(
        tmp_path,
        monkeypatch,
        lambda m: openvino_runtime.OpenVinoEncoder(m, NAMES, threads=1),
        "export",
        onnx_runtime,
    )
    assert openvino_runtime.OpenVinoEncoder(tiny_bert(0), NAMES, threads=1).precision == "f32"


def test_missing_package_names_the_extra(monkeypatch):
    for runtime in ("onnx-fused", "openvino", "openvino-bf16", "ct2", "ct2-int8"):
        spec = runtimes.RUNTIMES[runtime]
        monkeypatch.setitem(sys.modules, spec.module, None)  # as if not installed: import raises ImportError
        with pytest.raises(
            ImportError, match=rf"backbone.runtime={runtime} needs .*pip install 'csrv2\[{spec.extra}\]'"
        ):
            runtime_device(BackboneConfig(runtime=runtime, device="cpu"))
    with pytest.raises(ValueError, match=r"backbone.runtime=openvino.*backbone.device='cuda'"):
        runtime_device(BackboneConfig(runtime="openvino", device="cuda"))


def test_length_reading_runtimes_refuse_left_padding(monkeypatch):
    class LeftPadded:
        padding_side = "left"

    monkeypatch.setattr(runtimes, "require", lambda runtime: None)
    for runtime in ("onnx-fused", "ct2", "ct2-int8"):
        with pytest.raises(
            ValueError, match=rf"backbone.runtime={runtime} reads the attention mask .* pads on the left"
        ):
            runtimes.build(runtime, tiny_bert(0), LeftPadded(), NAMES)


@needs("onnx-fused")
def test_fused_refuses_models_it_cannot_fuse(tmp_path):
    model = tiny_bert(0)
    model.config.model_type = "llama"
    with pytest.raises(ValueError, match="onnx-fused fuses BERT-like encoders.*'llama': use backbone.runtime: onnx"):
        ort_fused.fuse(model, NAMES, tmp_path / "x.onnx")


def test_every_runtime_has_its_own_embedding_cache_key():
    keys = {r: embeddings.cache_path(BackboneConfig(runtime=r), "r8/test/texts", "abc") for r in runtimes.RUNTIMES}
    assert len(set(keys.values())) == len(keys)
    assert keys["torch"].name == "all-MiniLM-L6-v2__r8_test_texts__4dda004a03df7b5d.npy"  # unchanged
    accepted = typing.get_args(typing.get_type_hints(BackboneConfig)["runtime"])
    assert set(accepted) == set(runtimes.RUNTIMES)  # the config accepts every runtime of the table, no other


def test_prefetched_tokenizing_gives_the_same_embeddings(tmp_path):
    """encode tokenizes the next batch on a worker thread (TextEncoder.prefetch): the same batches, the same bytes."""
    tiny_tokenizer(tmp_path).save_pretrained(tmp_path)
    tiny_bert(0).save_pretrained(tmp_path)
    encoder = load_backbone(BackboneConfig(name=str(tmp_path), device="cpu", batch_size=2, threads=1))
    texts = ["w1 w2 w3 w4", "w5", "w6 w7", "w8", "w9 w10 w11", "w12 w1 w2 w3 w4 w5 w6"]
    assert encoder.prefetch
    ours = encoder.encode(texts, progress=False)
    encoder.prefetch = False
    assert np.array_equal(ours, encoder.encode(texts, progress=False))
