"""Backbones: pooling arithmetic on random tensors; all-MiniLM-L6-v2 against sentence-transformers on real text;
vision encoders on real digits."""

import numpy as np
import pytest
import torch

from csrv2.backbones import VisionEncoder, load_backbone, pool
from csrv2.config import BackboneConfig

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


def test_pooling_mean_cls_last_with_left_and_right_padding():
    hidden = torch.randn(3, 5, 4)
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    assert torch.allclose(pool(hidden, right, "mean")[0], hidden[0, :3].mean(0))
    assert torch.allclose(pool(hidden, right, "cls"), hidden[:, 0])
    last = pool(hidden, right, "last")
    assert torch.allclose(last, torch.stack([hidden[0, 2], hidden[1, 4], hidden[2, 0]]))
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
    assert torch.allclose(pool(hidden, left, "last"), hidden[:, -1])
    with pytest.raises(ValueError, match="pooling"):
        pool(hidden, right, "max")


@pytest.fixture(scope="module")
def encoder(minilm):
    return load_backbone(BackboneConfig(name="all-MiniLM-L6-v2", device="cpu", batch_size=3))


def test_minilm_matches_sentence_transformers(encoder):
    st = pytest.importorskip("sentence_transformers")
    from csrv2 import assets

    ours = encoder.encode(TEXTS, progress=False)
    ref = st.SentenceTransformer(str(assets.fetch("all-MiniLM-L6-v2")), device="cpu").encode(
        TEXTS, normalize_embeddings=True, convert_to_numpy=True
    )
    assert ours.shape == (len(TEXTS), 384) and ours.dtype == np.float32 and encoder.dim == 384
    cos = (ours * ref).sum(1) / np.linalg.norm(ref, axis=1)
    assert cos.min() >= 0.999, cos


def test_prompts_and_batch_order_do_not_change_rows(encoder):
    from csrv2.backbones import TextEncoder

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
