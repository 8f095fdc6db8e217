"""The Hugging Face parts of the model card (csrv2.runs.model_card): the YAML metadata block, and the usage and
similarity sections.

    hub_metadata(name, backbone_name, results, task_types, hf_datasets)   the `---` block the hub reads
    usage_lines(name, k, model_folder)                                   csrv2, SparseEncoder and Qdrant snippets

Metadata: library_name sentence-transformers (a model folder is a SparseEncoder folder; the text says csrv2 trained
it), pipeline_tag feature-extraction, tags, base_model and license from the backbone (an asset's Hugging Face id and
licence, or a hub id as given; a local folder names neither), datasets (the `hf:` sets trained on), and a model-index
with the run's scores from eval.json: one result per task, one metric per k, × 100 as the card's table shows them.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from csrv2.assets import registry as assets

# csrv2 task type → (the MTEB task type the hub's leaderboards read, the metric csrv2 scores it with)
TASK_METRICS = {
    "classification": ("Classification", "accuracy"),
    "image_classification": ("ImageClassification", "accuracy"),
    "clustering": ("Clustering", "v_measure"),
    "retrieval": ("Retrieval", "ndcg_at_10"),
    "sts": ("STS", "cosine_spearman"),
    "pair_classification": ("PairClassification", "cosine_ap"),
    "reranking": ("Reranking", "map"),
}
TAGS = ["csrv2", "sparse-encoder", "sparse", "sentence-transformers", "feature-extraction", "topk-sparse-autoencoder"]


def base_model(backbone_name: str) -> tuple[str | None, str | None]:
    """(Hugging Face id, licence) of a backbone: an asset's recorded ones, a hub id as given (licence unknown), or
    (None, None) for a local folder."""
    if backbone_name in assets.ASSETS:
        asset = assets.ASSETS[backbone_name]
        return asset.hub_id or None, asset.license or None
    looks_local = Path(backbone_name).expanduser().exists() or backbone_name.startswith(("/", ".", "~"))
    if looks_local or backbone_name.count("/") != 1:
        return None, None
    return backbone_name, None


def hub_metadata(
    name: str, backbone_name: str | None, results: dict | None, hf_datasets: list[str], model_folder: bool
) -> str:
    """The card's `---` YAML block (module docstring)."""
    meta: dict = {"library_name": "sentence-transformers"} if model_folder else {"library_name": "csrv2"}
    meta["pipeline_tag"] = "feature-extraction"
    meta["tags"] = list(TAGS)
    hub_id, licence = base_model(backbone_name) if backbone_name else (None, None)
    if hub_id:
        meta["base_model"] = hub_id
    if licence:
        meta["license"] = licence
    if hf_datasets:
        meta["datasets"] = hf_datasets
    if results:
        entries = []
        for task, r in results.items():
            task_type, metric = TASK_METRICS.get(r["type"], (r["type"], "score"))
            metrics = [
                {"type": metric, "value": round(100 * s["score"], 2), "name": f"{metric} at k={k} (× 100)"}
                for k, s in sorted(r["sparse"].items())
            ]
            entries.append(
                {
                    "task": {"type": task_type},
                    "dataset": {"name": task, "type": task, "split": "test"},
                    "metrics": metrics,
                }
            )
        meta["model-index"] = [{"name": name, "results": entries}]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def usage_lines(name: str, k: int, model_folder: bool) -> list[str]:
    """The usage and similarity sections: csrv2, sentence-transformers' SparseEncoder and Qdrant, all with cosine."""
    lines = ["## Usage", "", "With csrv2 (`pip install csrv2`):", "", "```python", "import csrv2", ""]
    lines += [
        f'model = csrv2.load("{name}")  # the head and the backbone that feeds it',
        f'queries = model.encode_query(["how do sparse codes work?"], k={k})  # SparseCodes: k active latents per row',
        'docs = model.encode_document(["Sparse codes keep a few latents per text.", "Bond yields rose."])',
        "scores = model.similarity(queries, docs)  # (1, 2) cosine, as the scores below",
        "```",
        "",
    ]
    if model_folder:
        lines += [
            "With sentence-transformers (≥ 5), no csrv2 needed: this folder is a SparseEncoder "
            "(Transformer → Pooling → Normalize → SparseAutoEncoder):",
            "",
            "```python",
            "from sentence_transformers import SparseEncoder",
            "",
            f'model = SparseEncoder("{name}")',
            f'queries = model.encode_query(["how do sparse codes work?"], max_active_dims={k})',
            f'docs = model.encode_document(["Sparse codes keep a few latents per text."], max_active_dims={k})',
            "scores = model.similarity(queries, docs)  # cosine: similarity_fn_name is set to csrv2's",
            "```",
            "",
        ]
    else:
        lines += [
            "For sentence-transformers, write this run as a SparseEncoder folder first: "
            f'`csrv2.load("{name}").save("out")` (or `csrv2.push_to_hub`).',
            "",
        ]
    lines += [
        "In Qdrant (`pip install 'csrv2[qdrant]'`), as sparse vectors; unit rows make Qdrant's dot product the cosine:",
        "",
        "```python",
        "import csrv2",
        "from qdrant_client import QdrantClient  # QdrantClient(url=...) for a server",
        "from csrv2.index.qdrant import QdrantSparse",
        "",
        f'model = csrv2.load("{name}")',
        'store = QdrantSparse(QdrantClient(":memory:"), "docs")',
        "store.create(dim=model.head.hidden)",
        'store.upsert(model.encode_document(["Sparse codes keep a few latents per text."]).normalized())',
        'scores, ids = store.search(model.encode_query(["how do sparse codes work?"]).normalized(), top=10)',
        "```",
        "",
        "## Similarity",
        "",
        "Every score on this card, `model.similarity` and the SparseEncoder's `similarity` (its `similarity_fn_name` is "
        '"cosine") are the cosine of the codes: an exact 0 for two texts that share no active latent. A dot product of '
        "unnormalised codes ranks differently (longer codes win); normalise first, as in the Qdrant snippet.",
        "",
    ]
    return lines
