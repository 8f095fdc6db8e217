"""`csrv2.load(run_or_folder)`: a trained head with the backbone that feeds it, ready for texts or images.

    model = csrv2.load("runs/quickstart")           # a run folder, a model folder, or any head folder with its record
    codes = model.encode(["a text", ...], k=2)      # SparseCodes (N, 2) over the head's h latents
    q, d = model.encode_query(["a question"]), model.encode_document(["a text"])   # with the backbone's prompts
    model.similarity(q, d)                          # (1, 1) cosine, the similarity csrv2's scores use
    dense = model.embed_dense(["a text", ...])      # float32 (N, d): the backbone embeddings the head encodes
    model.save("out/minilm-k2")                     # a folder SparseEncoder and csrv2.load both open (model_folder)
    model.push_to_hub("me/minilm-k2")               # the same folder, uploaded

Which backbone feeds the head: `csrv2_backbone.json` beside it (written by the trainer with the final head), else the
run's `config.yaml` (runs trained before the record existed); a finetuned run's own `backbone/` folder takes the base
model's place in both cases. `backbone=` overrides them (a head folder on its own, a head trained on data.embeddings).

The Hugging Face hub (docs/hub.md): `push_to_hub(run, "org/name")` uploads a run's model folder (csrv2.model_folder:
sentence-transformers' layout with csrv2's head and record beside it, no checkpoints); `csrv2.load("org/name",
revision=...)` downloads what loading needs (HUB_FILES) when no local folder of that name exists.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from csrv2 import hub
from csrv2.assets import registry as assets
from csrv2.backbone.encoders import TextEncoder, VisionEncoder, load_backbone
from csrv2.config.run_config import BackboneConfig
from csrv2.evaluation.scoring import cosine_matrix
from csrv2.files import MARKER
from csrv2.head.baselines import MRL_CONFIG_NAME
from csrv2.head.codes import SparseCodes
from csrv2.head.sparse_head import CONFIG_NAME, LEGACY_CONFIG_NAME, WEIGHTS_NAME, SparseHead
from csrv2.model_folder import ST_FILES, is_model_folder, write_model_folder
from csrv2.runs.backbone_record import backbone_config
from csrv2.runs.layout import BACKBONE_RECORD, CARD_FILE, CONFIG_FILE, EVAL_FILE, FINETUNED_DIR

# What csrv2.load fetches of a hub repo: the head, its backbone record (config.yaml for heads pushed before the record),
# a finetuned run's backbone/, the scores and card, and a model folder's sentence-transformers files (its backbone).
HUB_FILES = (WEIGHTS_NAME, CONFIG_NAME, LEGACY_CONFIG_NAME, BACKBONE_RECORD, CONFIG_FILE, EVAL_FILE, CARD_FILE)
HUB_FILES += (f"{FINETUNED_DIR}/*", MRL_CONFIG_NAME, *ST_FILES)
CHUNK = 8192  # rows per head.encode call: the (rows, h) pre-activations stay small


class SparseModel:
    """A SparseHead and the backbone that feeds it (csrv2.load builds it). `backbone_config` says which one."""

    def __init__(
        self,
        head: SparseHead,
        backbone: TextEncoder | VisionEncoder,
        backbone_config: BackboneConfig,
        folder: str | Path | None = None,
    ):
        if backbone.dim != head.d_in:
            raise ValueError(
                f"backbone {backbone_config.name} gives {backbone.dim}-d embeddings, the head takes d_in={head.d_in}"
            )
        self.head, self.backbone, self.backbone_config = head.eval(), backbone, backbone_config
        self.folder = Path(folder) if folder is not None else None  # the run or model folder it was loaded from

    def embed_dense(
        self, inputs: Sequence[str] | np.ndarray, kind: str = "document", batch_size: int | None = None
    ) -> np.ndarray:
        """Texts (N,) or images (N, H, W[, 3]) → float32 (N, d) backbone embeddings, as the head was trained on.
        kind (texts): "query" prepends the backbone's query prompt, "document" its document prompt."""
        if isinstance(inputs, str):
            inputs = [inputs]
        if isinstance(self.backbone, TextEncoder):
            return self.backbone.encode(list(inputs), kind=kind, batch_size=batch_size, progress=False)
        return self.backbone.encode(inputs, batch_size=batch_size, progress=False)

    @torch.no_grad()
    def encode_embeddings(self, x: np.ndarray, k: int | None = None) -> SparseCodes:
        """Backbone embeddings (N, d) → SparseCodes (N, k) on the CPU; k=None uses the head's trained k."""
        device = self.head.weight.device
        parts = [
            self.head.encode(torch.from_numpy(np.asarray(x[i : i + CHUNK], dtype=np.float32)).to(device), k).to("cpu")
            for i in range(0, len(x), CHUNK)
        ]
        return SparseCodes.cat(parts) if parts else self.head.encode(torch.zeros(0, self.head.d_in, device=device), k)

    def encode(
        self,
        inputs: Sequence[str] | np.ndarray,
        k: int | None = None,
        kind: str = "document",
        batch_size: int | None = None,
    ) -> SparseCodes:
        """Texts or images → SparseCodes (N, k): head.encode(embed_dense(inputs), k), for any k ≤ hidden."""
        return self.encode_embeddings(self.embed_dense(inputs, kind, batch_size), k)

    def encode_query(self, texts: Sequence[str], k: int | None = None, batch_size: int | None = None) -> SparseCodes:
        """Queries → SparseCodes (N, k), the backbone's query prompt prepended (sentence-transformers' encode_query)."""
        return self.encode(texts, k, kind="query", batch_size=batch_size)

    def encode_document(self, texts: Sequence[str], k: int | None = None, batch_size: int | None = None) -> SparseCodes:
        """Documents → SparseCodes (N, k) with the document prompt (sentence-transformers' encode_document)."""
        return self.encode(texts, k, kind="document", batch_size=batch_size)

    @staticmethod
    def similarity(a, b) -> torch.Tensor:
        """(Na, Nb) float32 cosine of SparseCodes, dense (N, h) arrays/tensors or scipy matrices: the similarity of
        csrv2's scores and of the saved model's SparseEncoder (similarity_fn_name "cosine"); rows with no active
        latent score 0, and two codes that share no latent score exactly 0."""
        return torch.from_numpy(np.asarray(cosine_matrix(_features(a), _features(b)), dtype=np.float32))

    def save(self, path: str | Path, name: str | None = None) -> Path:
        """Write the model folder that sentence-transformers' SparseEncoder and csrv2.load both open (csrv2.model_folder:
        the ST layout with the head, its backbone record, the run's scores and model card); returns it. name: what the
        card's snippets load (a hub id; default the path as given)."""
        return write_model_folder(self, path, name)

    def push_to_hub(self, repo_id: str, **kwargs) -> list[str]:
        """save() into a temporary folder and upload it to the Hugging Face model repo `repo_id` (arguments as the
        module-level push_to_hub's: revision, private, token, commit_message, create_pr). Returns the uploaded paths."""
        with tempfile.TemporaryDirectory(prefix="csrv2-push-") as tmp:
            folder = self.save(Path(tmp) / "model", name=repo_id)
            return _upload(folder, repo_id, **kwargs)


def _features(x):
    """SparseCodes → scipy CSR; a torch tensor → numpy; anything else as it is (cosine_matrix takes both)."""
    if isinstance(x, SparseCodes):
        return x.to_scipy()
    if isinstance(x, torch.Tensor):
        return (x.to_dense() if x.is_sparse else x).detach().cpu().float().numpy()
    return x


def load(
    run_or_folder: str | Path,
    backbone: BackboneConfig | str | None = None,
    device: str = "auto",
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> SparseModel:
    """The head saved in `run_or_folder` with its backbone (module docstring) on `device` (auto: CUDA when present).
    run_or_folder: a local folder, else a Hugging Face hub id (`org/name`, at `revision`) pushed by push_to_hub.
    backbone: a name (asset, hub id, local folder) or a BackboneConfig, instead of the one the folder records.
    trust_remote_code: allow a backbone whose record says it runs its own code (never implied by the record)."""
    folder = run_folder(run_or_folder, revision)
    downloaded = folder != Path(run_or_folder).expanduser()  # a hub snapshot
    if (folder / MRL_CONFIG_NAME).is_file():
        raise ValueError(f"{folder} holds a Matryoshka (MRL) head; csrv2.load opens sparse heads")
    head = SparseHead.from_pretrained(folder)
    if backbone is None:
        cfg = backbone_config(folder)
        named = Path(cfg.name).expanduser()
        inside = named.resolve() == folder.resolve() or folder.resolve() in named.resolve().parents
        if downloaded and cfg.name not in assets.ASSETS and (named.is_absolute() or named.exists()) and not inside:
            raise ValueError(
                f"{run_or_folder}: its backbone record names the local path {cfg.name}; a head from the hub may name "
                "an asset, a hub id or its own backbone/ folder, never a folder of this machine (pass backbone= to "
                "choose one yourself)"
            )
    else:
        cfg = BackboneConfig(name=backbone) if isinstance(backbone, str) else backbone
    if cfg.trust_remote_code and not trust_remote_code and backbone is None:
        raise ValueError(
            f"{folder}: its backbone {cfg.name} runs its own Python code (trust_remote_code); pass "
            "csrv2.load(..., trust_remote_code=True) if you trust that code"
        )
    cfg = dataclasses.replace(cfg, device=device, trust_remote_code=cfg.trust_remote_code or trust_remote_code)
    encoder = load_backbone(cfg)
    model = SparseModel(head, encoder, cfg, folder)
    model.head.to(encoder.device)
    return model


def run_folder(run_or_folder: str | Path, revision: str | None = None) -> Path:
    """A local run or head folder as it is; else a hub id → a local snapshot of the files in HUB_FILES."""
    if Path(run_or_folder).expanduser().exists() or not hub.looks_like_repo_id(str(run_or_folder)):
        if revision:
            raise ValueError(f"revision={revision!r} applies to Hugging Face hub ids; {run_or_folder} is a local path")
        return Path(run_or_folder).expanduser()
    return hub.snapshot(str(run_or_folder), revision, HUB_FILES, "csrv2.load")


def push_to_hub(
    run_dir: str | Path,
    repo_id: str,
    revision: str | None = None,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload csrv2 sparse model",
    create_pr: bool = False,
) -> list[str]:
    """Upload a run (or head) folder to a Hugging Face model repo as its model folder (csrv2.model_folder): a
    SparseEncoder that sentence-transformers opens, with the head, its backbone record, eval.json and the model card
    for csrv2.load; never checkpoints, metrics or caches. A folder SparseModel.save wrote goes up as it is. Creates the
    repo (private as asked) and the branch `revision` when missing. Returns the uploaded paths. A vision head whose
    backbone is a local folder is refused: nobody else could load it (a text model folder carries its backbone)."""
    folder = Path(run_dir).expanduser()
    kwargs = dict(revision=revision, private=private, token=token, commit_message=commit_message, create_pr=create_pr)
    if is_model_folder(folder):
        return _upload(folder, repo_id, **kwargs)
    SparseHead.from_pretrained(folder)  # a damaged or missing head fails here, before anything is loaded or uploaded
    cfg = backbone_config(folder)
    tuned = folder / FINETUNED_DIR
    local = (
        not cfg.name.startswith(str(tuned)) and cfg.name not in assets.ASSETS and Path(cfg.name).expanduser().exists()
    )
    if cfg.kind != "text" and local:
        raise ValueError(
            f"{folder}: the head's backbone is the local folder {cfg.name}, which a hub user cannot load; push that "
            f"model to the hub first and record its id (backbone.name), or finetune so the run holds its backbone"
        )
    return load(folder, device="cpu").push_to_hub(repo_id, **kwargs)


def _upload(
    folder: Path,
    repo_id: str,
    revision: str | None = None,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload csrv2 sparse model",
    create_pr: bool = False,
) -> list[str]:
    """Every file of `folder` but csrv2's local save marker to the model repo `repo_id` (created, with the branch
    `revision`, when missing)."""
    import huggingface_hub

    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != MARKER)
    huggingface_hub.create_repo(repo_id, token=token, private=private, exist_ok=True)
    if revision:
        huggingface_hub.create_branch(repo_id, branch=revision, token=token, exist_ok=True)
    huggingface_hub.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        revision=revision,
        token=token,
        commit_message=commit_message,
        create_pr=create_pr,
        ignore_patterns=[MARKER],
    )
    return files
