"""A loaded csrv2 model as an MTEB encoder: `mteb.evaluate(MtebEncoder(csrv2.load(run), k=2), tasks)`.

    import csrv2, mteb
    from csrv2.evaluation.mteb import MtebEncoder, mteb_task

    encoder = MtebEncoder(csrv2.load("runs/quickstart"), k=2)              # codes at k = 2, as dense (N, h) vectors
    result = mteb.evaluate(encoder, [mteb_task("lee")], cache=None)        # a csrv2 task as an MTEB task, offline
    result = mteb.evaluate(encoder, mteb.get_tasks(tasks=["STS12"]), cache=None)   # MTEB's own (the hub's data)

`mteb_task(name, tasks)` turns a catalog task, or one defined in YAML (data.tasks, files on disk), into an MTEB task
over the same split csrv2 scores (classification, sts, pair_classification, retrieval): MTEB's protocol on csrv2's data,
no download beyond csrv2's own (PyPI wheels).

STS and pair classification: MTEB's main score (cosine_spearman, cosine_ap) is computed by sklearn's
paired_cosine_distances in float32, which turns the exact 0 of two codes that share no active latent into noise of
about ±1e-7; those pairs — most pairs at k = 2 — then rank in an arbitrary order instead of tying, which moves
Spearman. The `spearman` (and `ap`) scores MTEB also reports are computed with the encoder's similarity_pairwise, this
module's exact cosine, and equal csrv2's own score. Values that could survive sklearn's arithmetic exactly would have to
be rounded (a k = 2 row cannot have squares that sum to exactly 1), so the encoder does not change them: read
`spearman` for csrv2 codes (docs/hub.md, "MTEB", has the numbers).

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

from csrv2.data.catalog import get_task
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


# -- a csrv2 task as an MTEB task -------------------------------------------------------------------------------------
MTEB_TYPES = {  # csrv2 task type → (mteb abstract task module and class, MTEB type, main score)
    "classification": ("classification", "AbsTaskClassification", "Classification", "accuracy"),
    "sts": ("sts", "AbsTaskSTS", "STS", "cosine_spearman"),
    "pair_classification": ("pair_classification", "AbsTaskPairClassification", "PairClassification", "max_ap"),
    "retrieval": ("retrieval", "AbsTaskRetrieval", "Retrieval", "ndcg_at_10"),
}


def _metadata(task, mteb_type: str, main_score: str, split: str):
    from mteb.abstasks.task_metadata import TaskMetadata

    return TaskMetadata(
        name=f"csrv2-{task.name}",
        description=task.description or f"csrv2 task {task.name}",
        reference=None,
        dataset={"path": f"csrv2/{task.name}", "revision": "local"},
        type=mteb_type,
        category="t2t",
        modalities=["text"],
        eval_splits=[split],
        eval_langs=["eng-Latn"],
        main_score=main_score,
        date=None,
        domains=None,
        task_subtypes=None,
        license=None,
        annotations_creators=None,
        dialect=None,
        sample_creation=None,
        bibtex_citation=None,
    )


def mteb_task(name: str, tasks=()):
    """The csrv2 task `name` (the catalog, or `tasks`: a config's data.tasks) as an MTEB task instance over the split
    csrv2 scores (its test split; classification also its train split, which MTEB's classifier is fit on). Types:
    classification, sts, pair_classification, retrieval; others are refused by name."""
    import importlib

    from datasets import Dataset, DatasetDict

    task = get_task(name, list(tasks))
    if task.type not in MTEB_TYPES:
        raise ValueError(f"task {name} ({task.type}): mteb_task builds {', '.join(MTEB_TYPES)} tasks")
    module, cls_name, mteb_type, main_score = MTEB_TYPES[task.type]
    base = getattr(importlib.import_module(f"mteb.abstasks.{module}"), cls_name)
    split_name = task.test_split
    split = task.splits[split_name]
    metadata = _metadata(task, mteb_type, main_score, split_name)

    if task.type == "classification":
        rows = {
            s: Dataset.from_dict({"text": list(task.splits[s].texts), "label": task.splits[s].labels.tolist()})
            for s in ("train", split_name)
        }
        data, extra = DatasetDict(rows), {}
    elif task.type == "sts":
        data = DatasetDict(
            {
                split_name: Dataset.from_dict(
                    {"sentence1": split.texts, "sentence2": split.texts2, "score": split.scores.tolist()}
                )
            }
        )
        extra = {"min_score": float(np.min(split.scores)), "max_score": float(np.max(split.scores))}
    elif task.type == "pair_classification":
        pairs = {"sentence1": [split.texts], "sentence2": [split.texts2], "labels": [split.labels.tolist()]}
        data, extra = DatasetDict({split_name: Dataset.from_dict(pairs)}), {}
    else:
        corpus = Dataset.from_dict({"id": list(task.corpus_ids), "text": list(task.corpus)})
        queries = Dataset.from_dict({"id": list(split.query_ids), "text": list(split.texts)})
        qrels = {q: {d: int(g) for d, g in split.qrels.get(q, {}).items()} for q in split.query_ids}
        data = {
            "default": {split_name: {"queries": queries, "corpus": corpus, "relevant_docs": qrels, "top_ranked": None}}
        }
        extra = {}

    def load_data(self, num_proc=None, **kwargs):
        self.dataset, self.data_loaded = data, True

    return type(f"Csrv2Task_{task.name}", (base,), {"metadata": metadata, "load_data": load_data, **extra})()
