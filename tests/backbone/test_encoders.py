"""Backbones: pooling arithmetic on random tensors; all-MiniLM-L6-v2 against sentence-transformers on real text;
sentence-transformers folders (a tiny random BERT) against pooling by hand; hub ids through a mocked hub; vision
encoders on real digits."""

import copy
import dataclasses

import numpy as np
import pytest
import torch

from csrv2.backbone.encoders import VisionEncoder, load_backbone, pool
from csrv2.config.run_config import BackboneConfig

TEXTS = [
    "A man is playing a guitar.",
    "The cat sat on the mat.",
    "Stocks fell sharply on Monday after the central bank raised interest rates by half a point.",
    "hi",
    "Wie spät ist es?",
    " ".join(["The quick brown fox jumps over the lazy dog."] * 60),  # > 256 tokens: truncation must agree
    "Reuters - shareholders approved the merger of the two companies at the annual meeting.",
    "Is there a vaccine for the common cold?",
]


def test_pooling_mean_cls_last_max_with_left_and_right_padding():
    hidden = torch.randn(3, 5, 4)
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    assert torch.allclose(pool(hidden, right, "mean")[0], hidden[0, :3].mean(0))
    assert torch.allclose(pool(hidden, right, "cls"), hidden[:, 0])
    last = pool(hidden, right, "last")
    assert torch.allclose(last, torch.stack([hidden[0, 2], hidden[1, 4], hidden[2, 0]]))
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
    assert torch.allclose(pool(hidden, left, "last"), hidden[:, -1])
    maxed = pool(hidden, right, "max")  # over real tokens only
    assert torch.equal(maxed[0], hidden[0, :3].max(0).values) and torch.equal(maxed[2], hidden[2, 0])
    with pytest.raises(ValueError, match="pooling"):
        pool(hidden, right, "weightedmean")


@pytest.fixture(scope="module")
def encoder(minilm):
    return load_backbone(BackboneConfig(name="all-MiniLM-L6-v2", device="cpu", batch_size=3))


def test_minilm_matches_sentence_transformers(encoder):
    st = pytest.importorskip("sentence_transformers")
    from csrv2.assets import registry as assets

    ours = encoder.encode(TEXTS, progress=False)
    ref = st.SentenceTransformer(str(assets.fetch("all-MiniLM-L6-v2")), device="cpu").encode(
        TEXTS, normalize_embeddings=True, convert_to_numpy=True
    )
    assert ours.shape == (len(TEXTS), 384) and ours.dtype == np.float32 and encoder.dim == 384
    cos = (ours * ref).sum(1) / np.linalg.norm(ref, axis=1)
    assert cos.min() >= 0.999, cos


def test_prompts_and_batch_order_do_not_change_rows(encoder):
    from csrv2.backbone.encoders import TextEncoder

    plain = encoder.encode(["query: " + t for t in TEXTS[:4]], progress=False)
    prompted = TextEncoder.__new__(TextEncoder)
    prompted.__dict__.update(encoder.__dict__)
    prompted.cfg = BackboneConfig(device="cpu", query_prompt="query: ", batch_size=1)
    assert np.allclose(prompted.encode(TEXTS[:4], kind="query", progress=False), plain, atol=1e-5)
    assert not np.allclose(prompted.encode(TEXTS[:4], kind="document", progress=False), plain, atol=1e-3)
    assert np.allclose(np.linalg.norm(plain, axis=1), 1, atol=1e-5)
    with pytest.raises(ValueError, match="kind"):
        encoder.encode(TEXTS, kind="passage")


def test_unknown_backbone_name_fails_naming_it(tmp_path):
    with pytest.raises(Exception, match="no-such-model"):
        load_backbone(BackboneConfig(name=str(tmp_path / "missing" / "no-such-model")))


def test_vision_encoder_wraps_any_module_and_pools():
    net = torch.nn.Conv2d(3, 6, 3)  # (B, 3, 32, 32) -> (B, 6, 30, 30): pooled to (B, 6)
    enc = VisionEncoder(net, dim=6, image_size=32, device="cpu")
    gray = np.random.default_rng(0).integers(0, 256, (5, 8, 8), dtype=np.uint8)
    x = enc.encode(gray, progress=False)
    assert x.shape == (5, 6) and x.dtype == np.float32
    assert np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    rgb = np.repeat(gray[..., None], 3, axis=-1)  # grey → 3 equal channels: same features
    assert np.allclose(enc.encode(rgb, progress=False), x, atol=1e-5)
    with pytest.raises(ValueError, match="images must be"):
        enc.encode(np.zeros((2, 8, 8, 4), np.uint8))


def test_efficientnet_lite0_features_separate_real_digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    rows = np.concatenate([np.flatnonzero(d.target == c)[:3] for c in (0, 1)])
    images = np.round(d.images[rows] * 255 / 16).astype(np.uint8)
    enc = load_backbone(BackboneConfig(name="efficientnet-lite0", kind="vision", device="cpu"))
    x = enc.encode(images, progress=False)
    assert x.shape == (6, 1280) and enc.dim == 1280
    sim = x @ x.T  # same digit closer than different digits, on average
    assert sim[:3, :3].mean() > sim[:3, 3:].mean() and sim[3:, 3:].mean() > sim[:3, 3:].mean()


def test_paraphrase_minilm_l3_converted_from_onnx():
    """The ONNX → BertModel conversion (asset paraphrase-MiniLM-L3-v2, 63 MB wheel). Checked once against
    onnxruntime on the original file: cosine 1.0000 per row (onnxruntime is not a dependency, so not re-run here)."""
    enc = load_backbone(BackboneConfig(name="paraphrase-MiniLM-L3-v2", device="cpu"))
    assert enc.dim == 384 and enc.max_length == 128 and enc.model.config.num_hidden_layers == 3
    x = enc.encode(
        ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell today."], progress=False
    )
    assert x[0] @ x[1] > 0.7 and x[0] @ x[2] < 0.3, x @ x.T


# -- sentence-transformers folders: their own pooling and Normalize module; hub ids; scoped transformers logging -----
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "cat", "dog", "sat", "the", "on", "mat", "ran"]
TINY_TEXTS = ["the cat sat on the mat", "a dog", "the dog ran", "cat"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A 1-layer, 8-wide BERT with a 13-word vocabulary saved as a plain transformers folder (random weights)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    (folder / "vocab.txt").write_text("\n".join(VOCAB))
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(VOCAB), hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16
    )
    BertModel(config).save_pretrained(folder)
    return folder


def st_folder(base, root, pooling: dict, normalize: bool, extra: list | None = None):
    """`base`'s files plus an ST modules.json → 1_Pooling/config.json (+ 2_Normalize) written by hand."""
    import json
    import shutil

    shutil.copytree(base, root)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    modules.append({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"})
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (root / "modules.json").write_text(json.dumps(modules + (extra or [])))
    (root / "1_Pooling").mkdir()
    (root / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 8, **pooling}))
    return root


def hand_pooled(folder, how: str, normalize: bool) -> np.ndarray:
    """Each text alone through BertModel (no padding at all), pooled by hand over its tokens."""
    from transformers import BertModel, BertTokenizerFast

    tok, model = BertTokenizerFast.from_pretrained(folder), BertModel.from_pretrained(folder).eval()
    rows = []
    for text in TINY_TEXTS:
        with torch.no_grad():
            hidden = model(**tok(text, return_tensors="pt")).last_hidden_state[0]  # (T, 8)
        v = {"cls": hidden[0], "mean": hidden.mean(0), "max": hidden.max(0).values, "last": hidden[-1]}[how]
        rows.append((v / v.norm() if normalize else v).numpy())
    return np.stack(rows)


@pytest.mark.parametrize(
    "pooling, how",
    [
        ({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}, "cls"),  # ST < 6 spelling
        ({"pooling_mode": "max"}, "max"),  # ST ≥ 6 spelling
        ({"pooling_mode": "lasttoken"}, "last"),
        ({"pooling_mode_mean_tokens": True}, "mean"),
    ],
)
def test_st_folder_pooling_is_followed_and_must_match_the_config(tiny_bert, tmp_path, pooling, how):
    folder = st_folder(tiny_bert, tmp_path / "st", pooling, normalize=True)
    enc = load_backbone(BackboneConfig(name=str(folder), pooling=how, device="cpu", batch_size=4))
    assert enc.st.pooling == how and enc.st.normalize
    x = enc.encode(TINY_TEXTS, progress=False)  # one padded batch: texts of 6, 2, 3 and 1 words
    np.testing.assert_allclose(x, hand_pooled(tiny_bert, how, normalize=True), atol=1e-5)
    other = "mean" if how != "mean" else "cls"
    with pytest.raises(ValueError, match=rf"backbone.pooling='{other}'.*1_Pooling/config.json pools by {how}"):
        load_backbone(BackboneConfig(name=str(folder), pooling=other, device="cpu"))
    with pytest.raises(ValueError, match="Normalize module"):
        load_backbone(BackboneConfig(name=str(folder), pooling=how, normalize=False, device="cpu"))


def test_st_folder_without_normalize_and_unsupported_modules(tiny_bert, tmp_path):
    plain = st_folder(tiny_bert, tmp_path / "plain", {"pooling_mode": "cls"}, normalize=False)
    enc = load_backbone(BackboneConfig(name=str(plain), pooling="cls", normalize=False, device="cpu"))
    np.testing.assert_allclose(enc.encode(TINY_TEXTS, progress=False), hand_pooled(tiny_bert, "cls", False), atol=1e-5)
    weighted = st_folder(tiny_bert, tmp_path / "w", {"pooling_mode_weightedmean_tokens": True}, normalize=False)
    with pytest.raises(ValueError, match="pooling mode 'weightedmean' is not supported"):
        load_backbone(BackboneConfig(name=str(weighted), device="cpu"))
    both = st_folder(tiny_bert, tmp_path / "b", {"pooling_mode": ["cls", "mean"]}, normalize=False)
    with pytest.raises(ValueError, match=r"pools by cls \+ mean"):
        load_backbone(BackboneConfig(name=str(both), device="cpu"))
    dense = {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"}
    with_dense = st_folder(tiny_bert, tmp_path / "d", {"pooling_mode": "mean"}, normalize=True, extra=[dense])
    with pytest.raises(ValueError, match=r"sentence_transformers.models.Dense \(3_Dense\) is not supported"):
        load_backbone(BackboneConfig(name=str(with_dense), device="cpu"))


def test_loading_leaves_transformers_logging_and_progress_bars_as_they_were(tiny_bert):
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    try:
        hf_logging.set_verbosity_info()
        hf_logging.enable_progress_bar()
        load_backbone(BackboneConfig(name=str(tiny_bert), device="cpu"))
        assert hf_logging.get_verbosity() == hf_logging.INFO and hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        load_backbone(BackboneConfig(name=str(tiny_bert), device="cpu"))
        assert not hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.set_verbosity(before)
        hf_logging.enable_progress_bar()


def test_hub_id_with_revision_and_trust_remote_code(tiny_bert, tmp_path, monkeypatch):
    """A hub id (no network: huggingface_hub and transformers' loaders are replaced by a local repo): the ST files are
    read from the repo at the revision, and revision / trust_remote_code reach both from_pretrained calls."""
    import huggingface_hub
    import transformers
    from huggingface_hub.errors import RemoteEntryNotFoundError

    repo = st_folder(tiny_bert, tmp_path / "repo", {"pooling_mode": "cls"}, normalize=True)
    asked, loaded = [], []

    def fake_download(repo_id, filename, revision=None, **_):
        asked.append((repo_id, filename, revision))
        if not (repo / filename).is_file():
            err = RemoteEntryNotFoundError.__new__(RemoteEntryNotFoundError)  # as the hub answers a 404 for a file
            Exception.__init__(err, f"{filename} not in {repo_id}")
            raise err
        return str(repo / filename)

    def recording(original):
        def from_pretrained(name, **kwargs):
            loaded.append((name, kwargs))
            return original(str(repo))

        return from_pretrained

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", recording(transformers.AutoModel.from_pretrained))
    monkeypatch.setattr(
        transformers.AutoTokenizer, "from_pretrained", recording(transformers.AutoTokenizer.from_pretrained)
    )
    cfg = BackboneConfig(name="org/tiny-st", revision="v1.0", trust_remote_code=True, pooling="cls", device="cpu")
    enc = load_backbone(cfg)
    assert ("org/tiny-st", "modules.json", "v1.0") in asked and (
        "org/tiny-st",
        "1_Pooling/config.json",
        "v1.0",
    ) in asked
    assert [kw for _, kw in loaded] == [{"revision": "v1.0", "trust_remote_code": True}] * 2
    np.testing.assert_allclose(enc.encode(TINY_TEXTS, progress=False), hand_pooled(tiny_bert, "cls", True), atol=1e-5)
    with pytest.raises(ValueError, match="pools by cls"):
        load_backbone(BackboneConfig(name="org/tiny-st", revision="v1.0", device="cpu"))


def test_revision_is_for_hub_ids_only(tiny_bert):
    with pytest.raises(ValueError, match="backbone.revision='main' applies to Hugging Face hub ids"):
        load_backbone(BackboneConfig(name=str(tiny_bert), revision="main", device="cpu"))


def test_a_hub_id_the_hub_cannot_give_is_named(monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(repo_id, filename, **_):
        raise LocalEntryNotFoundError("Got: ConnectError: [Errno -2] Name or service not known")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **kw: None)
    with pytest.raises(OSError, match=r"backbone.name='org/not-cached'.*cannot be reached and no copy is cached"):
        load_backbone(BackboneConfig(name="org/not-cached", device="cpu"))
    with pytest.raises(FileNotFoundError, match="not an asset .* not a local folder, and not a Hugging Face id"):
        load_backbone(BackboneConfig(name="a/b/c-not-here", device="cpu"))


def test_batch_order_by_characters_or_by_token_counts(encoder):
    """TextEncoder.length_order: longest first (ties in input order) by characters (the default) or, with
    backbone.batch_order=tokens, by token count after truncation."""
    texts = ["internationalization", "a b c d e f", "x", "a b c d e f", " ".join(["word"] * 400)]
    assert encoder.cfg.batch_order == "chars"
    assert list(encoder.length_order(texts)) == [4, 0, 1, 3, 2]
    by_tokens = copy.copy(encoder)
    by_tokens.cfg = dataclasses.replace(encoder.cfg, batch_order="tokens")
    # tokens: 4 (the long word is a few word pieces), 8, 3, 8, max_length (truncated)
    assert list(by_tokens.length_order(texts)) == [4, 1, 3, 0, 2]
    assert np.allclose(by_tokens.encode(texts, progress=False), encoder.encode(texts, progress=False), atol=1e-5)
