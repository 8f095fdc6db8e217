"""Backbone embedding cache: memory-mapped float32 .npy files under `$CSRV2_HOME/embeddings/`.

A file's name is a readable slug of its key plus a hash of everything that changes the numbers: backbone name,
pooling, the prompt used, max_length, normalize, the key (dataset / split / part) and the texts themselves. It is
written under a temporary name and renamed only when complete, so an interrupted run is never read as a finished one;
any later run with the same inputs reuses it.

    X = embed_texts(cfg.backbone, texts, key="r8/test/texts")     # (N, d) float32, memory-mapped
    X, labels = training_arrays(config)                           # what the trainer trains the head on
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from csrv2 import assets
from csrv2.config import BackboneConfig, Config
from csrv2.data import Task, get_task

_encoders: dict[tuple, object] = {}  # backbones loaded in this process, by their config (loading takes seconds)


def cache_dir() -> Path:
    return assets.home() / "embeddings"


def get_encoder(cfg: BackboneConfig):
    from csrv2.backbones import load_backbone

    key = tuple(sorted(vars(cfg).items()))
    if key not in _encoders:
        _encoders[key] = load_backbone(cfg)
    return _encoders[key]


def cache_path(cfg: BackboneConfig, key: str, fingerprint: str, kind: str = "document") -> Path:
    """Where the embeddings of (backbone settings, key, content fingerprint) live."""
    prompt = cfg.query_prompt if kind == "query" else cfg.document_prompt
    settings = {
        "backbone": cfg.name,
        "kind": cfg.kind,
        "pooling": cfg.pooling,
        "prompt": prompt,
        "max_length": cfg.max_length,
        "normalize": cfg.normalize,
        "key": key,
        "content": fingerprint,
    }
    if cfg.kind == "vision":  # only vision backbones resize (text keys stay as they were)
        settings["image_size"] = cfg.image_size
    if Path(cfg.name).is_dir():  # a local folder (e.g. a finetuned backbone) can be rewritten under the same name
        settings["weights"] = _folder_fingerprint(Path(cfg.name))
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{Path(cfg.name).name}__{key}")[:100]
    return cache_dir() / f"{slug}__{digest}.npy"


def _folder_fingerprint(folder: Path) -> str:
    """Name, size and modification time (ns) of every file in a model folder: changes whenever its weights do."""
    stats = sorted(
        (str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()
    )
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:16]


def _fingerprint_texts(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def _load_or_compute(path: Path, n: int, compute) -> np.ndarray:
    # mmap_mode "c" (copy-on-write): callers may write to the array (torch wants writable memory), the file never changes
    if path.is_file():
        x = np.load(path, mmap_mode="c")
        if x.shape[0] == n:
            return x
    path.parent.mkdir(parents=True, exist_ok=True)
    values = np.asarray(compute(), dtype=np.float32)  # (n, d)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".partial.npy", dir=path.parent)
    os.close(fd)
    try:
        np.save(tmp, values)
        os.replace(tmp, path)  # atomic: the final name appears only with complete content
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return np.load(path, mmap_mode="c")


def embed_texts(backbone_cfg: BackboneConfig, texts: Sequence[str], key: str, kind: str = "document") -> np.ndarray:
    """texts (N) → float32 (N, d), memory-mapped from the cache; the backbone is loaded only on a miss.

    `key` names what is embedded (e.g. "r8/train/texts"); the texts' content is hashed too, so a changed file
    never returns stale embeddings. kind "query" uses `query_prompt`, "document" `document_prompt`.
    """
    texts = list(texts)
    path = cache_path(backbone_cfg, key, _fingerprint_texts(texts), kind)
    return _load_or_compute(path, len(texts), lambda: get_encoder(backbone_cfg).encode(texts, kind=kind))


def embed_images(backbone_cfg: BackboneConfig, images: np.ndarray, key: str) -> np.ndarray:
    """images (N, H, W[, 3]) → float32 (N, d), cached like `embed_texts`."""
    images = np.ascontiguousarray(images)
    fingerprint = hashlib.sha256(images.tobytes()).hexdigest() + str(images.shape)
    path = cache_path(backbone_cfg, key, fingerprint)
    return _load_or_compute(path, len(images), lambda: get_encoder(backbone_cfg).encode(images))


def _embed_examples(backbone_cfg: BackboneConfig, task: Task, split: str) -> tuple[np.ndarray, np.ndarray]:
    ex = task.training_examples(split)
    if ex.images is not None:
        return np.asarray(embed_images(backbone_cfg, ex.images, f"{task.name}/{split}/images")), ex.labels
    texts = np.array(ex.texts, dtype=object)
    x = None
    for kind, rows in (("query", np.flatnonzero(ex.is_query)), ("document", np.flatnonzero(~ex.is_query))):
        if len(rows):
            part = embed_texts(backbone_cfg, texts[rows].tolist(), f"{task.name}/{split}/train-{kind}", kind)
            if x is None:
                x = np.empty((len(texts), part.shape[1]), dtype=np.float32)
            x[rows] = part
    return x, ex.labels


def training_arrays(config: Config) -> tuple[np.ndarray, np.ndarray]:
    """X float32 (N, d) and labels int64 (N,) of `config.data.task`'s train split, embedded by `config.backbone`.

    Labels follow the task type (PAPER.md; see csrv2.data.Task.training_examples).
    """
    if not config.data.task:
        raise ValueError(
            "data.task is empty: name a catalog task (python -m csrv2.data list) or one defined in data.tasks"
        )
    task = get_task(config.data.task, config.data.tasks)
    return _embed_examples(config.backbone, task, "train")


def embed_split(backbone_cfg: BackboneConfig, task: Task, split: str) -> dict[str, np.ndarray]:
    """Every text of one split, embedded (and cached), by part:

    classification/clustering: "texts"; sts/pair_classification: "texts", "texts2"; retrieval: "queries" and
    "corpus" (rows in task.corpus_ids order); reranking: "queries" and "candidates" (each query's positives then
    negatives, concatenated in query order); image_classification: "images".
    """
    s = task.splits[split]
    base = f"{task.name}/{split}"
    if task.type == "image_classification":
        return {"images": embed_images(backbone_cfg, s.images, f"{base}/images")}
    if task.type in ("classification", "clustering"):
        return {"texts": embed_texts(backbone_cfg, s.texts, f"{base}/texts")}
    if task.type in ("sts", "pair_classification"):
        return {
            "texts": embed_texts(backbone_cfg, s.texts, f"{base}/texts"),
            "texts2": embed_texts(backbone_cfg, s.texts2, f"{base}/texts2"),
        }
    if task.type == "retrieval":
        return {
            "queries": embed_texts(backbone_cfg, s.texts, f"{base}/queries", "query"),
            "corpus": embed_texts(backbone_cfg, task.corpus, f"{task.name}/corpus"),
        }
    if task.type == "reranking":
        candidates = [t for pos, neg in zip(s.positives, s.negatives) for t in pos + neg]
        return {
            "queries": embed_texts(backbone_cfg, s.texts, f"{base}/queries", "query"),
            "candidates": embed_texts(backbone_cfg, candidates, f"{base}/candidates"),
        }
    raise ValueError(f"task {task.name}: unknown type {task.type!r}")


def fill(config: Config) -> list[str]:
    """Embed data.task's train split and every split of data.task and eval.tasks; returns what was embedded."""
    done = []
    names = list(dict.fromkeys(([config.data.task] if config.data.task else []) + list(config.eval.tasks)))
    for name in names:
        task = get_task(name, config.data.tasks)
        if name == config.data.task:
            training_arrays(config)
            done.append(f"{name}/train (training examples)")
        for split in task.splits:
            embed_split(config.backbone, task, split)
            done.append(f"{name}/{split}")
    return done
