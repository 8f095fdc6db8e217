"""Finetuning throughput (samples/s) of backbone + sparse head, e.g. all-mpnet-base-v2 on a CUDA GPU.

    python scripts/bench_finetune.py --backbone all-mpnet-base-v2 --batch 64 --steps 20

Prints one line per setting (fp32; bf16 autocast; bf16 + gradient checkpointing on CUDA) with samples/s and peak
memory. One training step is the trainer's: backbone forward, `objectives.step_loss` (csrv2), backward, Adam.
"""

import argparse
import time

import numpy as np
import torch

from csrv2 import SparseHead
from csrv2.backbone.trainable import TrainableTextBackbone, autocast
from csrv2.config.run_config import BackboneConfig, TrainConfig
from csrv2.data.catalog import get_task
from csrv2.distributed import World, resolve_device
from csrv2.train import objectives


def finetune_throughput(args, texts, labels, bf16: bool, checkpointing: bool) -> str:
    device = resolve_device("auto")
    train = TrainConfig(backbone="full", gradient_checkpointing=checkpointing, bf16=bf16)
    backbone = TrainableTextBackbone(BackboneConfig(name=args.backbone, max_length=args.max_length), train).to(device)
    head = SparseHead(backbone.dim, 4 * backbone.dim, k=8).to(device)
    opt = torch.optim.Adam([{"params": head.parameters(), "lr": 1e-4}, {"params": backbone.parameters(), "lr": 1e-5}])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = None
    for step in range(args.warmup + args.steps):
        if step == args.warmup:  # the first steps compile kernels and grow allocator pools
            torch.cuda.synchronize() if device.type == "cuda" else None
            start = time.perf_counter()
        first = (step * args.batch) % (len(texts) - args.batch)
        batch = list(texts[first : first + args.batch])
        y = torch.as_tensor(labels[first : first + args.batch], device=device)
        with autocast(device, bf16):
            x = backbone(batch).float()
        loss = objectives.step_loss(head, x, y, head.k, train, World(), target=x.detach()).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    torch.cuda.synchronize() if device.type == "cuda" else None
    rate = args.steps * args.batch / (time.perf_counter() - start)
    peak = f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device.type == "cuda" else "n/a"
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    return (
        f"{args.backbone} | {name} | bf16={bf16} | checkpointing={checkpointing} | {rate:.1f} samples/s | peak {peak}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", default="all-mpnet-base-v2")
    parser.add_argument("--task", default="rotten-tomatoes", help="catalog task whose training texts are used")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)
    texts, labels = get_task(args.task).training_texts()
    texts = np.array(texts, dtype=object)
    settings = [(False, False), (True, False), (True, True)] if torch.cuda.is_available() else [(False, False)]
    for bf16, checkpointing in settings:
        print(finetune_throughput(args, texts, labels, bf16, checkpointing), flush=True)


if __name__ == "__main__":
    main()
