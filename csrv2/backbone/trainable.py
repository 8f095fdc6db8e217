"""A backbone that learns through the sparse objective (train.backbone = full | lora).

The text path tokenises a batch, runs the transformer with gradients, pools and L2-normalises:
    texts (B,) → tokens (B, T) → hidden (B, T, d) → pooled (B, d) → x (B, d), ‖x‖ = 1
The vision path preprocesses as the frozen encoder does and runs the network with gradients:
    images (B, H, W[, 3]) → (B, 3, S, S) → features (B, C[, h, w]) → pooled (B, C) → x (B, C), ‖x‖ = 1
The head then reconstructs x.detach() (the backbone's own output) and its sparse codes carry the
supervised contrastive loss back into the backbone.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from csrv2 import extras
from csrv2.backbone.encoders import VISION_CONFIG, TextEncoder, load_backbone, pool
from csrv2.config.run_config import BackboneConfig, TrainConfig


def trainable_backbone(backbone: BackboneConfig, train: TrainConfig) -> nn.Module:
    """The trainable module for backbone.kind: TrainableTextBackbone or TrainableVisionBackbone."""
    cls = TrainableVisionBackbone if backbone.kind == "vision" else TrainableTextBackbone
    return cls(backbone, train)


class TrainableTextBackbone(nn.Module):
    """A csrv2 TextEncoder's transformer, trainable whole (full) or through LoRA adapters (lora)."""

    def __init__(self, backbone: BackboneConfig, train: TrainConfig):
        super().__init__()
        if backbone.kind != "text":
            raise ValueError(
                f"train.backbone={train.backbone} is implemented for text backbones; backbone.kind={backbone.kind!r}"
            )
        encoder = TextEncoder(backbone)
        self.cfg, self.tokenizer, self.max_length = backbone, encoder.tokenizer, encoder.max_length
        model = encoder.model.train()
        if train.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        if train.backbone == "lora":
            model = _with_lora(model, train)
        self.model = model
        self.dim = encoder.dim

    def forward(self, texts: list[str], kind: str = "document") -> Tensor:
        """texts (B,) → (B, d) embeddings with gradient, pooled and L2-normalised as the frozen encoder does."""
        prompt = self.cfg.query_prompt if kind == "query" else self.cfg.document_prompt
        device = next(self.model.parameters()).device
        batch = self.tokenizer(
            [prompt + t for t in texts], padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(device)
        hidden = self.model(**batch).last_hidden_state  # (B, T, d)
        x = pool(hidden, batch["attention_mask"], self.cfg.pooling).float()
        return F.normalize(x, dim=1) if self.cfg.normalize else x

    def save_pretrained(self, path: str | Path) -> None:
        """A plain transformers folder (LoRA merged in), loadable as backbone.name for evaluation."""
        model = self.model
        if hasattr(model, "merge_and_unload"):
            import copy

            model = copy.deepcopy(model).merge_and_unload()
        model.save_pretrained(str(path))
        self.tokenizer.save_pretrained(str(path))
        sbert = Path(path) / "sentence_bert_config.json"  # keep the model's own length limit
        sbert.write_text(f'{{"max_seq_length": {self.max_length}}}\n')


class TrainableVisionBackbone(nn.Module):
    """A csrv2 VisionEncoder's network (efficientnet-lite0, torchvision:<model>), trainable whole or through LoRA.

    Saved as `model.safetensors` (the network's state dict) + `vision_backbone.json` (the base it was built from);
    `backbone.name=<that folder>` loads it back for evaluation.
    """

    def __init__(self, backbone: BackboneConfig, train: TrainConfig):
        super().__init__()
        self.cfg = backbone
        marker = Path(backbone.name) / VISION_CONFIG
        self.base = json.loads(marker.read_text())["base"] if marker.is_file() else backbone.name  # kept when re-tuned
        self.encoder = load_backbone(backbone)  # preprocessing and pooling exactly as the frozen encoder's
        module = self.encoder.module.train()
        if train.backbone == "lora":
            if not train.lora_target_modules:
                raise ValueError(
                    "train.backbone=lora on a vision backbone needs train.lora_target_modules "
                    "(names of its Conv2d / Linear layers, e.g. [conv_pw])"
                )
            module = _with_lora(module, train)
        self.model = module
        self.dim = self.encoder.dim

    def forward(self, images) -> Tensor:
        """images: uint8 (B, H, W) or (B, H, W, 3) → (B, dim) features with gradient, pooled and normalised."""
        device = next(self.model.parameters()).device
        return self.encoder.features(self.encoder.preprocess(images).to(device), self.model)

    def save_pretrained(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        model = self.model
        if hasattr(model, "merge_and_unload"):  # on a copy: merging in place would end the adapters' training
            import copy

            model = copy.deepcopy(model).merge_and_unload()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(path / "model.safetensors"))
        (path / VISION_CONFIG).write_text(json.dumps({"base": self.base, "dim": self.dim}) + "\n")


def _with_lora(model: nn.Module, train: TrainConfig) -> nn.Module:
    peft = extras.require("peft", "train.backbone=lora")
    LoraConfig, get_peft_model = peft.LoraConfig, peft.get_peft_model
    targets = train.lora_target_modules or None  # None: peft's default for the model type
    config = LoraConfig(r=train.lora_r, lora_alpha=train.lora_alpha, lora_dropout=0.0, target_modules=targets)
    try:
        return get_peft_model(model, config)
    except ValueError as err:
        raise ValueError(
            f"train.lora_target_modules: {err}; name the attention projections, e.g. [query, value]"
        ) from err


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on CUDA when asked; a no-op elsewhere (CPU bf16 is slower than fp32 on most CPUs)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda")
