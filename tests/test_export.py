"""sentence-transformers both ways: a run exported as a SparseEncoder folder gives csrv2's codes, and an ST
SparseAutoEncoder opens as a SparseHead with the same tensors and codes; what csrv2 cannot express is refused."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

import csrv2
from csrv2 import Config, SparseHead
from csrv2.backbone.encoders import TextEncoder
from csrv2.config.run_config import BackboneConfig, HeadConfig
from csrv2.evaluation.score_run import evaluate_run
from csrv2.evaluation.scoring import cosine_matrix
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
    assert 'SparseEncoder("' in (out / "README.md").read_text()  # csrv2's card, with the SparseEncoder snippet
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


@pytest.fixture(scope="module")
def scored_run(tiny_run, tmp_path_factory):
    """tiny_run with eval.json (k = 2, 4), as `csrv2 train` leaves a run."""
    run = shutil.copytree(tiny_run, tmp_path_factory.mktemp("scored") / "run")
    evaluate_run(
        Config.from_yaml(run / "config.yaml", [f"output_dir={run}", "eval.ks=[2,4]"]), SparseHead.from_pretrained(run)
    )
    return run


def front_matter(card: str) -> tuple[dict, str]:
    assert card.startswith("---\n")
    _, meta, body = card.split("---\n", 2)
    return yaml.safe_load(meta), body


def test_the_model_folder_carries_one_card_with_hub_metadata_and_the_runs_scores(scored_run, tmp_path):
    """The folder that push_to_hub uploads: its README.md is csrv2's card with the hub's metadata (model-index from
    eval.json), "trained with csrv2", usage for csrv2, SparseEncoder and Qdrant, and the similarity (cosine) that
    sentence-transformers is told to use too."""
    out = csrv2.load(scored_run, device="cpu").save(tmp_path / "model", name="me/tiny-k4")
    meta, body = front_matter((out / "README.md").read_text())
    assert meta["library_name"] == "sentence-transformers" and meta["pipeline_tag"] == "feature-extraction"
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2" and meta["license"] == "apache-2.0"
    assert {"csrv2", "sparse-encoder", "sentence-transformers"} <= set(meta["tags"]) and "datasets" not in meta
    scores = json.loads((scored_run / "eval.json").read_text())["tiny"]["sparse"]
    ((entry,),) = [m["results"] for m in meta["model-index"]]
    assert meta["model-index"][0]["name"] == "me/tiny-k4"
    assert entry["task"] == {"type": "Classification"} and entry["dataset"]["name"] == "tiny"
    assert [(m["type"], m["value"]) for m in entry["metrics"]] == [
        ("accuracy", round(100 * scores[k]["score"], 2)) for k in ("2", "4")
    ]
    assert "trained with csrv2" in body and "This is a [sentence-transformers]" not in body
    for snippet in ('csrv2.load("me/tiny-k4")', 'SparseEncoder("me/tiny-k4")', "max_active_dims=4", "QdrantSparse"):
        assert snippet in body
    assert "## Similarity" in body and "cosine" in body and "| tiny | classification |" in body
    blocks = [b.split("```", 1)[0] for b in body.split("```python\n")[1:]]
    assert len(blocks) == 3  # csrv2, SparseEncoder, Qdrant: each runs as written on the folder (the repo id → it)
    for block in blocks:
        scope: dict = {}
        exec(block.replace('"me/tiny-k4"', repr(str(out))), scope)
        scores = scope.get("scores")
        assert scores is not None and len(scores) > 0, block
    st_config = json.loads((out / "config_sentence_transformers.json").read_text())
    assert st_config["similarity_fn_name"] == "cosine" and st_config["prompts"] == {"query": "query: ", "document": ""}
    assert json.loads((out / "csrv2_backbone.json").read_text())["finetuned"] == "."
    assert (out / "eval.json").read_bytes() == (scored_run / "eval.json").read_bytes()
    run_meta, run_body = front_matter((scored_run / "README.md").read_text())  # the run's own card: the same, for csrv2
    assert run_meta["library_name"] == "csrv2" and run_meta["model-index"][0]["results"] == [entry]
    assert "csrv2.load(" in run_body and "SparseEncoder(" not in run_body


def test_csrv2_and_sentence_transformers_open_the_model_folder_with_the_same_codes_and_similarity(tiny_run, tmp_path):
    """csrv2.load(folder) encodes exactly as the run; SparseEncoder(folder) within float tolerance; both similarities
    are csrv2's cosine, with an exact 0 for codes that share no latent."""
    out = to_sentence_transformers(tiny_run, tmp_path / "st")
    run, folder = csrv2.load(tiny_run, device="cpu"), csrv2.load(out, device="cpu")
    assert Path(folder.backbone_config.name) == out
    for k in (2, 8):
        a, b = run.encode(TEXTS, k), folder.encode(TEXTS, k)
        assert torch.equal(a.indices, b.indices) and torch.equal(a.values, b.values)
    q, d = folder.encode_query(TEXTS[:3], k=4), folder.encode_document(TEXTS, k=4)
    assert torch.equal(q.values, run.encode(TEXTS[:3], 4, kind="query").values)
    sim = folder.similarity(q, d)
    assert sim.shape == (3, len(TEXTS)) and sim.dtype == torch.float32
    np.testing.assert_allclose(sim.numpy(), cosine_matrix(q.to_scipy(), d.to_scipy()), rtol=1e-6)
    torch.testing.assert_close(folder.similarity(q.to_dense(), d.to_dense().numpy()), sim)
    shared = (q.to_dense()[:, None, :] * d.to_dense()[None]).ne(0).any(-1)
    assert (sim[~shared] == 0).all() and (sim[shared] != 0).all()
    st = SparseEncoder(str(out), device="cpu")
    assert st.similarity_fn_name == "cosine"
    st_q = st.encode_query(TEXTS[:3], max_active_dims=4, convert_to_sparse_tensor=False)
    st_d = st.encode_document(TEXTS, max_active_dims=4, convert_to_sparse_tensor=False)
    torch.testing.assert_close(st.similarity(st_q, st_d).float(), sim, **TIGHT)
