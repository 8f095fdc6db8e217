"""A loaded csrv2 model as an MTEB encoder: `mteb.evaluate(MtebEncoder(csrv2.load(run), k=2), tasks)`.

With csrv2, mteb and csrv2.evaluation.mteb.MtebEncoder imported at the top of a script:

    encoder = MtebEncoder(csrv2.load("runs/quickstart"), k=2)              # codes at k = 2, as dense (N, h) vectors
    result = mteb.evaluate(encoder, mteb.get_tasks(tasks=["Banking77Classification"]), cache=None)

What MTEB receives: `model.encode(texts, k, kind)` (csrv2.model), each row the (h,) vector of its k-sparse code —
queries of a retrieval task with the backbone's query prompt (MTEB's prompt_type "query"), everything else with the
document prompt. `sparse=True` hands retrieval tasks (not reranking) a torch sparse COO tensor instead, the form
mteb's own SparseEncoder wrapper uses there (mteb/models/sentence_transformer_wrapper.py, _is_sparse_compatible_task);
other task types get dense rows either way. Similarity is cosine (csrv2.evaluation.scoring.cosine_matrix / paired_cosine on
scipy CSR), the same function csrv2's own scoring uses. `normalize=True` hands out unit rows (MTEB's classifiers and
k-means see raw vectors; csrv2's own scoring normalises, see docs/reproduction.md for the other differences).

The module is named after the package it serves; inside csrv2 `import mteb` is absolute and finds the real one
(tests/evaluation/test_mteb.py checks this). mteb is imported lazily: csrv2 imports without it (`pip install csrv2[mteb]`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse
import torch

from csrv2.evaluation.scoring import cosine_matrix, paired_cosine
from csrv2.head.codes import SparseCodes

if TYPE_CHECKING:  # the model is passed in; evaluation does not load one
    from csrv2.model import SparseModel


def _texts(inputs) -> list[str]:
    """The texts of an MTEB DataLoader (batches are dicts with a "text" list) or of a plain list of strings."""
    if isinstance(inputs, str):
        return [inputs]
    texts: list[str] = []
    for batch in inputs:
        if isinstance(batch, str):
            texts.append(batch)
        elif isinstance(batch, dict) and "text" in batch:
            texts.extend(batch["text"])
        else:
            raise TypeError(f"MtebEncoder encodes texts; got a batch of {type(batch).__name__} without a 'text' list")
    return texts


def _to_csr(x) -> scipy.sparse.csr_matrix:
    """numpy / torch dense / torch sparse (N, h) or (h,) → float32 scipy CSR (N, h)."""
    if isinstance(x, torch.Tensor):
        if x.is_sparse:
            x = x.coalesce()
            idx, val = x.indices().cpu().numpy(), x.values().cpu().float().numpy()
            return scipy.sparse.csr_matrix((val, (idx[0], idx[1])), shape=tuple(x.shape), dtype=np.float32)
        x = x.detach().cpu().float().numpy()
    if scipy.sparse.issparse(x):
        return scipy.sparse.csr_matrix(x, dtype=np.float32)
    x = np.asarray(x, dtype=np.float32)
    return scipy.sparse.csr_matrix(x.reshape(1, -1) if x.ndim == 1 else x)


def sparse_task(task_metadata) -> bool:
    """Whether mteb's evaluator for this task takes sparse tensors: retrieval, not reranking (as mteb decides it)."""
    return getattr(task_metadata, "simplified_task_type", None) == "retrieval" and "Reranking" not in str(
        getattr(task_metadata, "type", "")
    )


class MtebEncoder:
    """A csrv2 SparseModel as an mteb EncoderProtocol: encode, similarity, similarity_pairwise, mteb_model_meta.

    k: the number of active latents per code (None: the head's trained k). sparse: retrieval tasks get torch sparse
    COO tensors. normalize: unit-norm rows. name / revision: what mteb records (and caches results under); default
    "csrv2/<backbone>-h<h>-k<k>" and revision "k<k>".
    """

    def __init__(
        self,
        model: SparseModel,
        k: int | None = None,
        *,
        sparse: bool = False,
        normalize: bool = False,
        name: str | None = None,
        revision: str | None = None,
        batch_size: int | None = None,
    ):
        hidden = model.head.hidden
        self.k = model.head.k if k is None else int(k)
        if not 1 <= self.k <= hidden:
            raise ValueError(f"k={k}: a code keeps between 1 and h={hidden} latents")
        self.model, self.sparse, self.normalize, self.batch_size = model, sparse, normalize, batch_size
        backbone = str(model.backbone_config.name).rstrip("/").split("/")[-1]
        self.name = name or f"csrv2/{backbone}-h{hidden}-k{self.k}"
        self.revision = revision or f"k{self.k}"
        self._meta = None

    @property
    def mteb_model_meta(self):
        """An mteb ModelMeta: name, revision, embed_dim = h, cosine similarity, model_type sparse when sparse=True."""
        if self._meta is None:
            from mteb.models.model_meta import ModelMeta, ScoringFunction

            self._meta = ModelMeta.create_empty(
                {
                    "name": self.name,
                    "revision": self.revision,
                    "embed_dim": self.model.head.hidden,
                    "similarity_fn_name": ScoringFunction.COSINE,
                    "model_type": ["sparse" if self.sparse else "dense"],
                    "framework": ["PyTorch"],
                    "modalities": ["text"],
                    "use_instructions": False,
                }
            )
        return self._meta

    def codes(self, texts: list[str], kind: str = "document") -> SparseCodes:
        """csrv2's codes for `texts` at this encoder's k (normalised when normalize=True): what encode hands out."""
        codes = self.model.encode(texts, self.k, kind=kind, batch_size=self.batch_size)
        return codes.normalized() if self.normalize else codes

    def encode(
        self,
        inputs,
        *,
        task_metadata=None,
        hf_split: str | None = None,
        hf_subset: str | None = None,
        prompt_type=None,
        **kwargs: Any,
    ) -> np.ndarray | torch.Tensor:
        """MTEB's DataLoader (or a list of texts) → (N, h): float32 numpy rows, or a torch sparse COO tensor for a
        retrieval task when sparse=True. prompt_type "query" → the backbone's query prompt, else the document one."""
        kind = "query" if str(getattr(prompt_type, "value", prompt_type)) == "query" else "document"
        codes = self.codes(_texts(inputs), kind)
        if self.sparse and sparse_task(task_metadata):
            csr = codes.to_scipy().tocoo()
            index = torch.from_numpy(np.vstack([csr.row, csr.col]).astype(np.int64))
            return torch.sparse_coo_tensor(
                index, torch.from_numpy(csr.data), csr.shape, check_invariants=True
            ).coalesce()
        return codes.to_dense().float().numpy()

    def similarity(self, embeddings1, embeddings2) -> torch.Tensor:
        """(N1, h), (N2, h) dense or sparse → (N1, N2) cosine similarities (all-zero rows score 0)."""
        return torch.from_numpy(cosine_matrix(_to_csr(embeddings1), _to_csr(embeddings2)))

    def similarity_pairwise(self, embeddings1, embeddings2) -> torch.Tensor:
        """(N, h), (N, h) → (N,) cosine of each pair."""
        return torch.from_numpy(np.asarray(paired_cosine(_to_csr(embeddings1), _to_csr(embeddings2))))
