"""What the vector-database adapter tests share (tests/index/test_qdrant.py, tests/index/test_milvus.py): real
MiniLM embeddings of StackOverflow titles."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.index.helpers import N_QUERIES, N_REAL


@pytest.fixture(scope="session")
def stackoverflow_embeddings(shared_data, minilm) -> torch.Tensor:
    """(N_QUERIES + N_REAL, 384) all-MiniLM-L6-v2 embeddings of the first unique StackOverflow titles of the shared
    data folder (embedded once, ~2 min on 2 cores, then read from the test home's embedding cache)."""
    from csrv2.backbone.embeddings import embed_texts
    from csrv2.config.run_config import BackboneConfig

    path = shared_data / "clustering" / "stc2-stackoverflow" / "texts.jsonl"
    texts: dict[str, None] = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            text = " ".join(json.loads(line)["text"].split())
            if text:
                texts.setdefault(text)
            if len(texts) == N_QUERIES + N_REAL:
                break
    cfg = BackboneConfig(device="cpu", max_length=64)  # titles: 64 tokens hold them all
    return torch.from_numpy(np.array(embed_texts(cfg, list(texts), key="vectordb/stackoverflow")))
