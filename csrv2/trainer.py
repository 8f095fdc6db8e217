"""Head training on backbone embeddings: the whole story of a run, top to bottom.

arrays (N, d) [+ labels (N,)] → batches (shuffled, or class-aware for supervised contrast)
  → head forward at k_t (annealed) → autoencoder loss + β · contrastive → Adam step
  → metrics.jsonl every log_every steps, step_NNNNNN/ every checkpoint_every steps
  → the trained head saved at the run folder's root (SparseHead.from_pretrained(run_dir))
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from csrv2 import checkpoint, losses, sampling
from csrv2.baselines import MRL_DIMS, MRLHead
from csrv2.config import Config, ConfigError
from csrv2.head import SparseHead
from csrv2.schedule import KAnnealing

Arrays = tuple[np.ndarray, np.ndarray | None]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_arrays(path: str | Path, field: str = "data.embeddings") -> Arrays:
    """Read (embeddings (N, d) float32, labels (N,) int64 | None) from a .npy or a .npz (`embeddings`, `labels`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{field}: {path} does not exist")
    if path.suffix == ".npy":
        return np.load(path, mmap_mode="r"), None
    if path.suffix != ".npz":
        raise ValueError(f"{field}: {path} must be a .npy or .npz file")
    with np.load(path) as archive:
        if "embeddings" not in archive:
            raise ValueError(
                f"{field}: {path} has arrays {archive.files}; it needs `embeddings` (and optional `labels`)"
            )
        labels = archive["labels"] if "labels" in archive else None
        return archive["embeddings"], labels


def check_arrays(embeddings: np.ndarray, labels: np.ndarray | None, where: str) -> Arrays:
    if embeddings.ndim != 2 or embeddings.shape[0] < 2:
        raise ValueError(f"{where}: embeddings must be (N ≥ 2, d), got shape {embeddings.shape}")
    bad = np.flatnonzero(~np.isfinite(np.asarray(embeddings)).all(axis=1))
    if bad.size:
        raise ValueError(f"{where}: embeddings row {bad[0]} has NaN or inf ({bad.size} such rows)")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (embeddings.shape[0],):
            raise ValueError(f"{where}: labels must be ({embeddings.shape[0]},), got {labels.shape}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"{where}: labels must be integers, got dtype {labels.dtype}")
        labels = labels.astype(np.int64)
    return embeddings, labels


class Trainer:
    """Trains one head (SparseHead for csrv2/csr, MRLHead for mrl) into config.output_dir.

    arrays: (embeddings (N, d), labels (N,) or None) to train on; None → read config.data.
    """

    def __init__(self, config: Config, arrays: Arrays | None = None):
        self.config = config
        self.run_dir = Path(config.output_dir)
        self.device = resolve_device(config.train.device)
        self._arrays = arrays

    # -- data ------------------------------------------------------------------------------------
    def training_arrays(self) -> Arrays:
        data = self.config.data
        if self._arrays is not None:
            embeddings, labels = self._arrays
            where = "training arrays"
        elif data.embeddings:
            embeddings, labels = load_arrays(data.embeddings)
            where = f"data.embeddings ({data.embeddings})"
        elif data.task:
            from csrv2.cache import training_arrays

            embeddings, labels = training_arrays(self.config)
            where = f"data.task ({data.task})"
        else:
            raise ConfigError("no training data: set data.embeddings (a .npy/.npz) or data.task")
        embeddings, labels = check_arrays(embeddings, labels, where)
        if self.config.train.objective in ("csrv2", "mrl") and labels is None:
            raise ValueError(
                f"{where}: train.objective={self.config.train.objective} needs labels for its supervised "
                "contrastive loss; give a .npz with `labels`, or set train.objective=csr"
            )
        return embeddings, labels

    def batches(self, labels: np.ndarray | None, n: int, epoch: int) -> list[np.ndarray]:
        t = self.config.train
        if t.objective == "csr" or labels is None:
            return sampling.shuffled_batches(n, t.batch_size, t.seed, epoch)
        return sampling.class_aware_batches(labels, t.batch_size, t.samples_per_class, t.seed, epoch)

    # -- model -----------------------------------------------------------------------------------
    def build_head(self, d_in: int) -> nn.Module:
        torch.manual_seed(self.config.train.seed)
        if self.config.train.objective == "mrl":
            return MRLHead(d_in, [m for m in MRL_DIMS if m <= d_in])
        h = self.config.head
        return SparseHead(d_in, h.hidden, h.k, h.k_aux, h.dead_steps, h.recon_4k_coef, h.aux_coef)

    def step_loss(self, head: nn.Module, x: torch.Tensor, y: torch.Tensor | None, k: int) -> dict[str, torch.Tensor]:
        """The loss of one batch and its parts. x: (B, d), y: (B,) or None."""
        t = self.config.train
        if isinstance(head, MRLHead):
            loss = losses.matryoshka_loss(head(x), y, head.dims, t.temperature)
            return {"loss": loss, "contrastive_loss": loss}
        out = head(x, k=k)
        codes = out.codes.to_dense()  # (B, h), differentiable through the kept values
        if t.objective == "csrv2":
            contrast = losses.supcon_loss(codes, y, t.temperature, t.positives_inside_log)
        else:
            contrast = losses.info_nce(codes, temperature=t.temperature)
        return {
            "loss": t.recon_weight * out.loss + t.contrastive_coef * contrast,
            "recon_loss": out.recon_loss,
            "recon_4k_loss": out.recon_4k_loss,
            "aux_loss": out.aux_loss,
            "contrastive_loss": contrast,
        }

    # -- run folder ------------------------------------------------------------------------------
    def prepare_run_dir(self) -> Path | None:
        """Write the resolved config first; return the checkpoint to resume from, if any."""
        resolved = self.config.to_dict()
        saved = self.run_dir / "config.yaml"
        found = checkpoint.list_checkpoints(self.run_dir) if self.run_dir.is_dir() else []
        if self.config.train.resume:
            if saved.is_file():
                previous = Config.from_yaml(saved).to_dict()
                changed = _diff(previous, resolved, ignore={"train.resume"})
                if changed:
                    raise ConfigError(
                        f"train.resume=true but the config differs from {saved} in {', '.join(changed)}; "
                        "resume with the same config, or start a new output_dir"
                    )
            resume_from = found[-1] if found else None
        else:
            if found or (self.run_dir / "metrics.jsonl").exists():
                raise FileExistsError(
                    f"output_dir {self.run_dir} already holds a run; set train.resume=true to continue it "
                    "or choose another output_dir"
                )
            resume_from = None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        import yaml

        checkpoint.atomic_write_text(saved, yaml.safe_dump(resolved, sort_keys=False))
        return resume_from

    # -- the loop --------------------------------------------------------------------------------
    def fit(self) -> nn.Module:
        cfg, t = self.config, self.config.train
        embeddings, labels = self.training_arrays()
        n, d_in = embeddings.shape
        resume_from = self.prepare_run_dir()

        head = self.build_head(d_in).to(self.device)
        optimizer = torch.optim.Adam(head.parameters(), lr=t.lr, eps=t.adam_eps)
        steps_per_epoch = len(self.batches(labels, n, 0))
        total = t.max_steps or t.epochs * steps_per_epoch
        anneal = cfg.anneal and t.objective != "mrl"
        schedule = KAnnealing(t.k_start, cfg.head.k, total, t.decay_fraction if anneal else 0.0, cfg.head.hidden)

        step = 0
        if resume_from is not None:
            step = checkpoint.load_checkpoint(resume_from, head, optimizer)
        metrics = MetricsLog(self.run_dir / "metrics.jsonl", keep_until=step)

        head.train()
        epoch_cache: tuple[int, list[np.ndarray]] = (-1, [])
        bar = tqdm(total=total, initial=step, desc=f"train {t.objective}", dynamic_ncols=True)
        while step < total:
            epoch, position = divmod(step, steps_per_epoch)
            if epoch_cache[0] != epoch:
                epoch_cache = (epoch, self.batches(labels, n, epoch))
            rows = np.sort(epoch_cache[1][position])  # sorted rows read a memory map sequentially
            x = torch.from_numpy(np.asarray(embeddings[rows], dtype=np.float32)).to(self.device)
            y = None if labels is None else torch.from_numpy(labels[rows]).to(self.device)
            k_t = schedule(step)

            parts = self.step_loss(head, x, y, k_t)
            optimizer.zero_grad(set_to_none=True)
            parts["loss"].backward()
            optimizer.step()
            step += 1
            bar.update(1)

            metrics.add(parts)
            if step % t.log_every == 0 or step == total:
                dead = head.dead_fraction() * 100 if isinstance(head, SparseHead) else 0.0
                line = metrics.flush(step=step, epoch=epoch, k=k_t, lr=optimizer.param_groups[0]["lr"], dead_pct=dead)
                bar.set_postfix(loss=f"{line['loss']:.4f}", k=k_t, dead=f"{dead:.0f}%")
            if step % t.checkpoint_every == 0 or step == total:
                checkpoint.save_checkpoint(self.run_dir, step, head, optimizer, t.keep_checkpoints)
        bar.close()
        save_final(head, self.run_dir)
        return head


class MetricsLog:
    """metrics.jsonl: one line per logged step, each loss part averaged over the steps since the last line."""

    def __init__(self, path: Path, keep_until: int):
        self.path = path
        self.sums: dict[str, float] = {}
        self.count = 0
        self.started = time.perf_counter()
        # On resume, drop lines written after the checkpoint so no step is logged twice.
        if path.exists():
            kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= keep_until]
            checkpoint.atomic_write_text(path, "".join(line + "\n" for line in kept))

    def add(self, parts: dict[str, torch.Tensor]) -> None:
        for name, value in parts.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value.detach())
        self.count += 1

    def flush(self, **fields) -> dict:
        line = {**fields, **{name: total / max(self.count, 1) for name, total in self.sums.items()}}
        line["elapsed_s"] = round(time.perf_counter() - self.started, 3)
        if not all(math.isfinite(v) for v in line.values() if isinstance(v, float)):
            raise FloatingPointError(f"non-finite loss at step {fields.get('step')}: {line}")
        with self.path.open("a") as f:
            f.write(json.dumps(line) + "\n")
        self.sums, self.count = {}, 0
        return line


def save_final(head: nn.Module, run_dir: Path) -> None:
    """Save the trained head at the run folder's root, via a temporary folder so no half-written head is left."""
    tmp = run_dir / ".final.tmp"
    head.save_pretrained(tmp)
    for file in tmp.iterdir():
        file.replace(run_dir / file.name)
    tmp.rmdir()


def _diff(a: dict, b: dict, ignore: set[str], prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(a) | set(b)):
        name = f"{prefix}{key}"
        if name in ignore:
            continue
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            keys += _diff(a[key], b[key], ignore, name + ".")
        elif a.get(key) != b.get(key):
            keys.append(name)
    return keys
