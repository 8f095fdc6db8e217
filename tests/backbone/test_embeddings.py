"""The embedding cache (csrv2.backbone.embeddings): reuse, keys, atomic writes (with a counting fake encoder), and dense MiniLM
quality on a real R8 subset."""

import numpy as np
import pytest

from csrv2.backbone import embeddings as cache
from csrv2.config.run_config import BackboneConfig
from csrv2.data.catalog import get_task


def test_embeddings_are_cached_memory_mapped_and_reused(fake, tmp_path):
    cfg = BackboneConfig(normalize=False)  # the fake's raw rows: [len(text), len(prompt), 1, is_query]
    x = cache.embed_texts(cfg, ["a", "bb", "ccc"], key="t/train/texts")
    assert isinstance(x, np.memmap) and x.shape == (3, 4) and x.dtype == np.float32 and x[:, 0].tolist() == [1, 2, 3]
    y = cache.embed_texts(cfg, ["a", "bb", "ccc"], key="t/train/texts")
    assert np.array_equal(x, y) and len(next(iter(fake.values())).seen) == 3  # second call: no encoding
    files = list((tmp_path / "embeddings").glob("*.npy"))
    assert len(files) == 1 and files[0].name.startswith("all-MiniLM-L6-v2__t_train_texts__")


def test_key_covers_settings_prompt_and_content(fake):
    base = BackboneConfig()
    texts = ["a", "bb"]
    paths = {cache.cache_path(base, "k", cache._fingerprint_texts(texts))}
    for changed in (
        BackboneConfig(pooling="cls"),
        BackboneConfig(max_length=128),
        BackboneConfig(normalize=False),
        BackboneConfig(name="other"),
        BackboneConfig(document_prompt="passage: "),
    ):
        paths.add(cache.cache_path(changed, "k", cache._fingerprint_texts(texts)))
    paths.add(cache.cache_path(base, "k2", cache._fingerprint_texts(texts)))
    paths.add(cache.cache_path(base, "k", cache._fingerprint_texts(["a", "bc"])))
    assert len(paths) == 8
    q = BackboneConfig(query_prompt="query: ")  # a query prompt changes query embeddings only
    assert cache.cache_path(q, "k", "f", "document") == cache.cache_path(base, "k", "f", "document")
    assert cache.cache_path(q, "k", "f", "query") != cache.cache_path(base, "k", "f", "query")


def test_a_rewritten_local_backbone_folder_gets_a_new_key(fake, tmp_path):
    """A finetuned backbone is saved to the same folder on every retrain: its old embeddings must not be reused."""
    import os

    folder = tmp_path / "run" / "backbone"
    folder.mkdir(parents=True)
    weights = folder / "model.safetensors"
    weights.write_bytes(b"first")
    cfg = BackboneConfig(name=str(folder))
    before = cache.cache_path(cfg, "k", "f")
    assert cache.cache_path(cfg, "k", "f") == before  # stable while the folder is unchanged
    weights.write_bytes(b"second")
    os.utime(weights, ns=(1, 1))  # even with a clock that did not move, the size or mtime differs
    assert cache.cache_path(cfg, "k", "f") != before


def test_an_interrupted_write_is_never_read_as_complete(fake, monkeypatch, tmp_path):
    cfg = BackboneConfig(normalize=False)
    real_save = np.save

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # the run dies while writing

    monkeypatch.setattr(np, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        cache.embed_texts(cfg, ["a", "bb"], key="k")
    assert not list((tmp_path / "embeddings").glob("*"))  # no final file, no partial left behind
    monkeypatch.setattr(np, "save", real_save)
    fake_home = tmp_path / "embeddings"
    partial = fake_home / ".left-over.partial.npy"  # a partial file from a killed process is ignored
    partial.write_bytes(b"\x93NUMPY garbage")
    assert cache.embed_texts(cfg, ["a", "bb"], key="k")[:, 0].tolist() == [1, 2]


def test_dense_minilm_classifies_real_r8(minilm):
    """Real data: logistic regression on dense all-MiniLM-L6-v2 embeddings of an R8 subset.

    Full R8 (5,485 / 2,189 texts, max_length 256) gives 0.96-0.97 (docs/assets.md: 0.966); this subset of 800 / 400 texts
    at 128 tokens runs in about a minute on 2 CPU cores and gives ~0.93-0.95.
    """
    from sklearn.linear_model import LogisticRegression

    task = get_task("r8")
    cfg = BackboneConfig(max_length=128, device="cpu")
    rng = np.random.default_rng(0)
    tr = rng.choice(len(task.splits["train"]), 800, replace=False)
    te = rng.choice(len(task.splits["test"]), 400, replace=False)
    train, test = task.splits["train"].subset(tr), task.splits["test"].subset(te)
    Xtr = cache.embed_texts(cfg, train.texts, "r8/train/subset800")
    Xte = cache.embed_texts(cfg, test.texts, "r8/test/subset400")
    acc = LogisticRegression(max_iter=2000, C=10).fit(Xtr, train.labels).score(Xte, test.labels)
    assert acc >= 0.9, acc


def test_a_corrupted_cache_file_is_named_and_recomputed(fake, tmp_path, capsys):
    """Each cache file has a sha256 sidecar checked on open: a flipped byte is named and the rows computed again."""
    cfg = BackboneConfig()
    x = np.array(cache.embed_texts(cfg, ["a", "bb", "ccc"], key="k"))
    (path,) = (tmp_path / "embeddings").glob("*.npy")
    assert (path.parent / (path.name + ".sha256")).is_file()
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))
    again = cache.embed_texts(cfg, ["a", "bb", "ccc"], key="k")
    assert "does not match its recorded sha256" in capsys.readouterr().err
    np.testing.assert_array_equal(again, x)
    assert sum(len(e.seen) for e in fake.values()) == 6  # encoded twice: once at first, once after the damage


def test_a_cache_file_without_its_sidecar_is_recomputed(fake, tmp_path, capsys):
    """Deleting a file's .sha256 sidecar used to make the next open trust it (and write a sidecar for the damaged
    bytes): a file without its digest is now named and computed again."""
    cfg = BackboneConfig()
    x = np.array(cache.embed_texts(cfg, ["a", "bb", "ccc"], key="k"))
    (path,) = (tmp_path / "embeddings").glob("*.npy")
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))
    (path.parent / (path.name + ".sha256")).unlink()
    cache._intact.clear()
    again = cache.embed_texts(cfg, ["a", "bb", "ccc"], key="k")
    assert "has no recorded sha256" in capsys.readouterr().err
    np.testing.assert_array_equal(again, x)
    assert sum(len(e.seen) for e in fake.values()) == 6
