"""sentence-transformers both ways: a run exported as a SparseEncoder folder gives csrv2's codes, and an ST
SparseAutoEncoder opens as a SparseHead with the same tensors and codes; what csrv2 cannot express is refused."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import save_file

import csrv2
from csrv2 import SparseHead
from csrv2.backbone.encoders import TextEncoder
from csrv2.config.run_config import BackboneConfig, HeadConfig
from csrv2.export import st_classes, to_sentence_transformers
from csrv2.head.st_format import from_csrv2

pytest.importorskip("sentence_transformers", reason="needs sentence-transformers (csrv2[extras])")
SparseEncoder, Transformer, Pooling, Normalize, SparseAutoEncoder = st_classes()  # 6.x paths, or 5.x

TEXTS = [
    "A cat sleeps on the warm windowsill.",
    "Bond yields rose after the central bank meeting.",
    "dogs",
    "The quarterly report beat analyst expectations by a wide margin, lifting the stock to a record high.",
    "Kittens and puppies play in the garden all afternoon.",
    "interest rates",
]
KS = (2, 8, 32)
TIGHT = {"rtol": 1e-5, "atol": 1e-6}


def st_codes(model, k, kind="document"):
    """(N, h) dense codes of ST's encode at max_active_dims=k, every text in one batch as csrv2's encoder does."""
    encode = model.encode_query if kind == "query" else model.encode
    return encode(TEXTS, max_active_dims=k, batch_size=64, convert_to_sparse_tensor=False)


def test_an_exported_run_opens_in_sentence_transformers_with_the_same_codes(tiny_run, tmp_path):
    out = to_sentence_transformers(tiny_run, tmp_path / "st")
    modules = json.loads((out / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == [
        "Transformer",
        "Pooling",
        "Normalize",
        "SparseAutoEncoder",
    ]
    assert "SparseEncoder" in (out / "README.md").read_text()  # ST's own model card
    assert "a csrv2 sparse head" in (tiny_run / "README.md").read_text()  # the run keeps its own
    assert json.loads((out / "3_SparseAutoEncoder" / "config.json").read_text()) == {
        "input_dim": 384,
        "hidden_dim": 128,
        "k": 4,
        "k_aux": 32,
        "normalize": False,
        "dead_threshold": 3,
    }
    model = SparseEncoder(str(out), device="cpu")
    assert model.max_seq_length == 32
    ours = csrv2.load(tiny_run, device="cpu")
    for k in KS:
        torch.testing.assert_close(st_codes(model, k), ours.encode(TEXTS, k).to_dense(), **TIGHT)
    torch.testing.assert_close(st_codes(model, 8, "query"), ours.encode(TEXTS, 8, kind="query").to_dense(), **TIGHT)


def test_csrv2_to_st_and_back_is_identical(tiny_run, tmp_path):
    out = to_sentence_transformers(tiny_run, tmp_path / "st")
    head = SparseHead.from_pretrained(tiny_run)
    assert head.steps_since_fired.max() > 0  # trained counters make the stats map visible
    for folder in (out, out / "3_SparseAutoEncoder"):  # the SparseEncoder folder, or the module's own
        back = SparseHead.from_sentence_transformers(folder)
        assert back.config == head.config and back.d_in == head.d_in
        assert back.state_dict().keys() == head.state_dict().keys()
        for name, tensor in head.state_dict().items():
            assert torch.equal(back.state_dict()[name], tensor), name
    x = torch.nn.functional.normalize(torch.randn(20, 384, generator=torch.Generator().manual_seed(0)), dim=1)
    for k in KS:
        a, b = head.encode(x, k), back.encode(x, k)
        assert torch.equal(a.indices, b.indices) and torch.equal(a.values, b.values)


def test_the_finetuned_backbone_is_exported(tiny_finetuned_run, tmp_path):
    out = to_sentence_transformers(tiny_finetuned_run, tmp_path / "st")
    model = SparseEncoder(str(out), device="cpu")
    ours = csrv2.load(tiny_finetuned_run, device="cpu")
    torch.testing.assert_close(st_codes(model, 8), ours.encode(TEXTS, 8).to_dense(), **TIGHT)


def test_an_st_model_built_from_scratch_opens_as_a_sparse_head(minilm, tmp_path):
    torch.manual_seed(0)
    autoencoder = SparseAutoEncoder(384, 256, k=8, k_aux=64, dead_threshold=5)
    with torch.no_grad():  # random biases and dead-latent statistics, so every tensor's mapping shows
        autoencoder.pre_bias.normal_(0, 0.05)
        autoencoder.latent_bias.normal_(0, 0.05)
        autoencoder.stats_last_nonzero.copy_(torch.randint(0, 12, (256,)))
    transformer = Transformer(str(minilm), max_seq_length=32)
    model = SparseEncoder(modules=[transformer, Pooling(384, "mean"), Normalize(), autoencoder], device="cpu")
    model.save(str(tmp_path / "st"))

    head = SparseHead.from_sentence_transformers(tmp_path / "st")
    assert head.config == HeadConfig(hidden=256, k=8, k_aux=64, dead_steps=4) and head.d_in == 384
    assert torch.equal(head.weight, autoencoder.encoder.weight) and torch.equal(head.b_pre, autoencoder.pre_bias)
    assert torch.equal(head.b_lat, autoencoder.latent_bias)
    assert torch.equal(head.steps_since_fired, (autoencoder.stats_last_nonzero - 1).clamp_min(0))
    assert torch.equal(head.dead_mask(), autoencoder.stats_last_nonzero > autoencoder.dead_threshold)

    x = torch.nn.functional.normalize(torch.randn(20, 384, generator=torch.Generator().manual_seed(1)), dim=1)
    embedded = torch.from_numpy(
        TextEncoder(BackboneConfig(name=str(minilm), max_length=32, device="cpu")).encode(TEXTS, progress=False)
    )
    for k in KS:
        with torch.inference_mode():  # the module alone, on the same input: bit-identical
            theirs = autoencoder.eval()({"sentence_embedding": x.clone()}, max_active_dims=k)["sentence_embedding"]
        assert torch.equal(theirs, head.encode(x, k).to_dense())
        torch.testing.assert_close(st_codes(model, k), head.encode(embedded, k).to_dense(), **TIGHT)


def write_module(folder, config, tensors):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


def module_files(**config):
    torch.manual_seed(0)
    head = SparseHead(8, 32, 4)
    st_config, tensors = from_csrv2({"d_in": 8, **dataclasses.asdict(head.config)}, head.state_dict())
    tensors = {n: t.clone() for n, t in tensors.items()}  # safetensors refuses shared memory
    return {**st_config, **config}, tensors


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"normalize": True}, "normalize=true"),
        ({"activation": "gelu"}, r"\['activation'\] have no SparseHead equivalent"),
        ({"dead_threshold": 0}, "dead_threshold=0"),
    ],
)
def test_what_a_sparse_head_cannot_express_is_refused_by_name(tmp_path, change, message):
    config, tensors = module_files(**change)
    with pytest.raises(ValueError, match=message):
        SparseHead.from_sentence_transformers(write_module(tmp_path / "m", config, tensors))


def test_untied_weights_extra_tensors_and_other_models_are_refused(tmp_path):
    config, tensors = module_files()
    untied = {**tensors, "encoder.weight": tensors["encoder.weight"] + 1}
    with pytest.raises(ValueError, match="encoder.weight and decoder.linear.weight differ"):
        SparseHead.from_sentence_transformers(write_module(tmp_path / "untied", config, untied))
    with pytest.raises(ValueError, match=r"tensors \['gate'\]"):
        SparseHead.from_sentence_transformers(
            write_module(tmp_path / "gate", config, {**tensors, "gate": torch.ones(3)})
        )
    write_module(tmp_path / "model" / "1_SparseAutoEncoder", config, tensors)
    listing = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.sparse_encoder.modules.MLMTransformer"},
        {"idx": 1, "name": "1", "path": "1_SparseAutoEncoder", "type": "x.SparseAutoEncoder"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
    ]
    (tmp_path / "model" / "modules.json").write_text(json.dumps(listing))
    with pytest.raises(ValueError, match=r"modules after the SparseAutoEncoder \(\['Dense'\]\)"):
        SparseHead.from_sentence_transformers(tmp_path / "model")
    (tmp_path / "model" / "modules.json").write_text(json.dumps([listing[0]]))
    with pytest.raises(ValueError, match=r"exactly one SparseAutoEncoder module; its modules are \['MLMTransformer'\]"):
        SparseHead.from_sentence_transformers(tmp_path / "model")
    (tmp_path / "model" / "modules.json").write_text(json.dumps(listing[:2]))
    assert SparseHead.from_sentence_transformers(tmp_path / "model").config == HeadConfig(32, 4, 32, 100)


def test_exported_k_aux_is_capped_at_hidden():
    """ST's AuxK takes a top-k_aux over all h latents; csrv2's k_aux > h already acts as h."""
    head = SparseHead(8, 32, 4, k_aux=256)
    config, _ = from_csrv2({"d_in": 8, **dataclasses.asdict(head.config)}, head.state_dict())
    assert config["k_aux"] == 32


def test_an_export_into_the_run_folder_is_refused_before_anything_is_written(tiny_run):
    before = sorted(p.name for p in tiny_run.iterdir())
    for target in (tiny_run, tiny_run / "st", tiny_run.parent):  # replacing any of them would delete the run
        with pytest.raises(ValueError, match="overlaps the run folder"):
            to_sentence_transformers(tiny_run, target)
    assert sorted(p.name for p in tiny_run.iterdir()) == before


def test_an_export_replaces_a_previous_export_only(tiny_run, tmp_path):
    """An export over a previous one (marked, or from before markers: the module layout it writes) replaces it; a
    folder of the user's own files is refused before any work and kept. It used to be deleted."""
    from csrv2.files import MARKER, RefusedFolder

    out = to_sentence_transformers(tiny_run, tmp_path / "st")
    assert json.loads((out / MARKER).read_text())["kind"] == "sentence-transformers export"
    (out / MARKER).unlink()  # as exported before markers existed
    (out / "stale.txt").write_text("from the previous export")
    to_sentence_transformers(tiny_run, out)
    assert (out / MARKER).is_file() and not (out / "stale.txt").exists()
    (out / "modules.json").write_text("[]")  # not the layout csrv2 writes: someone else's folder
    (out / MARKER).unlink()
    with pytest.raises(RefusedFolder, match="not a sentence-transformers export written by csrv2"):
        to_sentence_transformers(tiny_run, out)
    assert (out / "modules.json").read_text() == "[]"
