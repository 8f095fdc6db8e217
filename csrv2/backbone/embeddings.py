"""The backbone embedding cache: memory-mapped float32 .npy files under `$CSRV2_HOME/embeddings/`.

A file's name is a readable slug of its key plus a hash of everything that changes the numbers: backbone name (and hub revision),
pooling, the prompt used, max_length, normalize, the key (dataset / split / part) and the texts themselves. It is
written under a temporary name and renamed only when complete, so an interrupted run is never read as a finished one;
any later run with the same inputs reuses it.

    X = embed_texts(cfg.backbone, texts, key="r8/test/texts")     # (N, d) float32, memory-mapped
    X = embed_images(cfg.backbone, images, key="digits/test/images")
    with sharded(world): ...                                        # under torchrun: each rank embeds its slice

Which texts of a task are embedded under which key is csrv2.data.prepare's business.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from csrv2 import paths
from csrv2.backbone import embed_shards
from csrv2.backbone.encoders import load_backbone
from csrv2.config.run_config import BackboneConfig
from csrv2.distributed import World
from csrv2.files import atomic_save_npy, digest_problem, record_digest

_encoders: dict[tuple, object] = {}  # backbones loaded in this process, by their config (loading takes seconds)
_world = [World()]  # the processes that share a cache miss (`sharded`); a world of one outside it


@contextmanager
def sharded(world: World) -> Iterator[None]:
    """Within: every rank of `world` calls embed_texts / embed_images with the same inputs in the same order; a cache
    miss is then embedded by all of them, each its contiguous slice of the rows, and joined by rank 0 into the one
    cache file a single process would write, byte for byte (csrv2.backbone.embed_shards). `csrv2 embed` under torchrun."""
    _world.append(world)
    try:
        yield
    finally:
        _world.pop()


def cache_dir() -> Path:
    return paths.home() / "embeddings"


def get_encoder(cfg: BackboneConfig):
    """The backbone `cfg` describes, loaded once per process."""
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
    if cfg.batch_order != "chars":  # other batches, other last bits (keys of the default order stay as they were)
        settings["batch_order"] = cfg.batch_order
    if cfg.runtime != "torch":  # onnxruntime's numbers differ in the last bits (torch keys stay as they were)
        settings["runtime"] = cfg.runtime
    if cfg.revision:  # a hub id at a branch, tag or commit (keys without one stay as they were)
        settings["revision"] = cfg.revision
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


def _load_or_compute(path: Path, n: int, compute: Callable[[slice], np.ndarray], key: str) -> np.ndarray:
    """The cached (n, d) array at `path` when it is complete and intact, else compute(rows) of all rows (of this
    rank's slice inside `sharded`), stored, then mapped.

    Each file has a sidecar `<name>.sha256` checked on its first open in a process (~0.1 s per 100 MB here; later
    opens of the unchanged file — same size and mtime — skip the hash): a file that no longer matches, or has no
    sidecar (deleted, or never written: a cache from before sidecars, a writer killed between the two files), is
    named on stderr and computed again.
    """
    if path.is_file():
        problem = "" if _stat_key(path) in _intact else _verify(path, n)
        if not problem:
            _intact.add(_stat_key(path))
            # mmap "c" (copy-on-write): callers may write to the array (torch wants writable memory); the file never changes
            return np.load(path, mmap_mode="c")
        print(f"embedding cache: {path} {problem}; computing it again", file=sys.stderr)
    _remove_stale_partials(path.parent)
    world = _world[-1]
    if world.active:  # every rank embeds its slice; rank 0 writes `path` and its sidecar
        embed_shards.compute_sharded(path, n, compute, world, key)
        _intact.add(_stat_key(path))
        return np.load(path, mmap_mode="c")
    values = np.asarray(compute(slice(0, n)), dtype=np.float32)  # (n, d)
    atomic_save_npy(path, values)  # the final name appears only with complete content
    record_digest(path)
    _intact.add(_stat_key(path))
    return np.load(path, mmap_mode="c")


# Cache files already hashed in this process, by (path, size, mtime_ns): the grid opens a task's arrays several times.
_intact: set[tuple[str, int, int]] = set()


def _stat_key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path), stat.st_size, stat.st_mtime_ns


def _verify(path: Path, n: int) -> str:
    """ "" when the cached file holds n rows and matches the sha256 its sidecar records, else what is wrong."""
    problem = digest_problem(path)
    if problem:
        return problem
    try:
        rows = np.load(path, mmap_mode="r").shape[0]
    except (ValueError, OSError) as err:
        return f"cannot be read as .npy ({err})"
    return "" if rows == n else f"holds {rows} rows, expected {n}"


def _remove_stale_partials(folder: Path, older_than_s: float = 3600.0) -> None:
    """Temporary files of writes that died (a live write renames its file within seconds of creating it)."""
    now = time.time()
    for partial in folder.glob(".*.partial"):
        try:
            if now - partial.stat().st_mtime > older_than_s:
                partial.unlink()
        except FileNotFoundError:  # another process finished or removed it meanwhile
            pass


def embed_texts(backbone_cfg: BackboneConfig, texts: Sequence[str], key: str, kind: str = "document") -> np.ndarray:
    """texts (N) → float32 (N, d), memory-mapped from the cache; the backbone is loaded only on a miss.

    `key` names what is embedded (e.g. "r8/train/texts"); the texts' content is hashed too, so a changed file
    never returns stale embeddings. kind "query" uses `query_prompt`, "document" `document_prompt`.
    """
    texts = list(texts)
    path = cache_path(backbone_cfg, key, _fingerprint_texts(texts), kind)
    return _load_or_compute(
        path, len(texts), lambda rows: get_encoder(backbone_cfg).encode(texts[rows], kind=kind), key
    )


def embed_images(backbone_cfg: BackboneConfig, images: np.ndarray, key: str) -> np.ndarray:
    """images (N, H, W[, 3]) → float32 (N, d), cached like `embed_texts`."""
    images = np.ascontiguousarray(images)
    fingerprint = hashlib.sha256(images.tobytes()).hexdigest() + str(images.shape)
    path = cache_path(backbone_cfg, key, fingerprint)
    return _load_or_compute(path, len(images), lambda rows: get_encoder(backbone_cfg).encode(images[rows]), key)
