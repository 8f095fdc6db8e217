"""`csrv2 embed` under torchrun: two gloo ranks fill the embedding cache with the very file one process writes, and a
rank that dies leaves no final file (csrv2.backbone.embed_shards). A tiny deterministic encoder stands in for the backbone."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from csrv2.backbone.embed_shards import _bounds
from csrv2.distributed import World

# Runs `csrv2 embed` (csrv2.cli.main) with a per-text encoder in place of the backbone. CRASH_RANK: that rank dies
# (os._exit) while embedding its slice of the corpus, as a killed or out-of-memory worker would.
DRIVER = """
import hashlib, os, sys
import numpy as np
from csrv2 import cli
from csrv2.backbone import embeddings

class TextHash:
    def encode(self, texts, kind="document"):
        if os.environ.get("RANK", "0") == os.environ.get("CRASH_RANK") and any("doc" in t for t in texts):
            os._exit(3)
        rows = [np.frombuffer(hashlib.sha256((kind + t).encode()).digest(), np.uint8)[:6] for t in texts]
        x = np.asarray(rows, np.float32) + 1
        return x / np.linalg.norm(x, axis=1, keepdims=True)

embeddings.get_encoder = lambda cfg: TextHash()
cli.main(["embed", "--config", sys.argv[1]])
"""


def embed(tmp_path: Path, home: str, ranks: int, port: int, crash_rank: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CSRV2_HOME": str(tmp_path / home), "CRASH_RANK": crash_rank}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[2]), env.get("PYTHONPATH", "")])
    launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={ranks}", f"--master_port={port}"]
    command = [*(launcher if ranks > 1 else [sys.executable]), str(tmp_path / "driver.py"), str(tmp_path / "run.yaml")]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def corpus(tmp_path):
    """A retrieval task of 101 documents (odd: the ranks' slices differ in size) and 14 queries, defined in data.tasks."""
    folder = tmp_path / "mini"
    folder.mkdir()
    (folder / "corpus.jsonl").write_text(
        "".join(f'{{"id": "d{i}", "text": "doc {i} {"x" * (i % 5)}"}}\n' for i in range(101))
    )
    (folder / "queries.jsonl").write_text("".join(f'{{"id": "q{i}", "text": "query {i}"}}\n' for i in range(14)))
    (folder / "qrels.tsv").write_text("query_id\tdoc_id\trelevance\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(14)))
    (tmp_path / "driver.py").write_text(DRIVER)
    task = f"  tasks:\n  - name: mini\n    type: retrieval\n    path: {folder}\n"
    (tmp_path / "run.yaml").write_text("eval:\n  tasks: [mini]\ndata:\n" + task)
    return tmp_path


def cache_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "embeddings").iterdir())}


@pytest.mark.slow
def test_two_gloo_ranks_write_the_cache_one_process_writes(corpus):
    one = embed(corpus, "one", 1, 0)
    assert one.returncode == 0, one.stderr[-3000:]
    two = embed(corpus, "two", 2, 29541)
    assert two.returncode == 0, two.stderr[-3000:]
    files_one, files_two = cache_files(corpus / "one"), cache_files(corpus / "two")
    assert sorted(files_one) == sorted(files_two)  # same names: no part or manifest left behind
    assert len([name for name in files_one if name.endswith(".npy")]) == 2  # the corpus and the queries
    for name, content in files_one.items():
        assert files_two[name] == content, name  # byte for byte, sidecars included
    corpus_file = next(name for name in files_one if "_corpus__" in name and name.endswith(".npy"))
    assert np.load(corpus / "two" / "embeddings" / corpus_file).shape == (101, 6)


@pytest.mark.slow
def test_a_rank_that_dies_leaves_no_final_file(corpus):
    done = embed(corpus, "crash", 2, 29542, crash_rank="1")
    assert done.returncode != 0
    folder = corpus / "crash" / "embeddings"
    finals = [p.name for p in folder.iterdir() if p.name.endswith(".npy") and ".part" not in p.name]
    assert not [name for name in finals if "_corpus__" in name], finals  # the corpus was never joined
    assert not list(folder.glob("*_corpus__*.npy.sha256"))
    rerun = embed(corpus, "crash", 2, 29543)  # a later run recomputes it; the stale parts are replaced
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    names = [p.name for p in folder.iterdir()]
    assert not [name for name in names if ".part" in name or "manifest" in name], names
    assert len([name for name in names if name.endswith(".npy")]) == 2


@pytest.mark.parametrize("n", [0, 1, 2, 7, 101])
@pytest.mark.parametrize("size", [1, 2, 3])
def test_rank_bounds_are_the_contiguous_shards_of_array_split(n, size):
    for rank in range(size):
        expected = np.array_split(np.arange(n), size)[rank]
        lo, hi = _bounds(n, World(rank, size))
        np.testing.assert_array_equal(np.arange(lo, hi), expected)
