"""Head training on backbone embeddings: the whole story of a run, top to bottom.

TrainingData (embeddings (N, d) or texts/images, labels (N,)) → batches (shuffled, or class-aware for supervised contrast)
  → head forward at k_t (annealed) → weighted loss (csrv2.train.objectives) → backward → clip → Adam step
  → dead-latent counters advanced with the latents that fired (over all ranks)
  → metrics.jsonl every log_every steps, step_NNNNNN/ every checkpoint_every steps
  → the trained head saved at the run folder's root (SparseHead.from_pretrained(run_dir)), with the backbone that
    feeds it in csrv2_backbone.json (csrv2.load(run_dir) opens both)
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn
from tqdm.auto import tqdm

from csrv2 import distributed
from csrv2.backbone.trainable import autocast, trainable_backbone
from csrv2.config.run_config import Config, ConfigError, strict
from csrv2.data.prepare import TrainingData
from csrv2.data.stacked_rows import StackedRows, row_blocks, take_rows
from csrv2.files import atomic_write_json, atomic_write_text, replace_files_into
from csrv2.head.baselines import MRL_DIMS, MRLHead
from csrv2.head.k_annealing import KAnnealing
from csrv2.head.sparse_head import SparseHead
from csrv2.runs import checkpoint, provenance
from csrv2.runs.backbone_record import backbone_record
from csrv2.runs.layout import BACKBONE_RECORD, CONFIG_FILE, DATA_RECORD, METRICS_FILE
from csrv2.runs.metrics import MetricsLog, tensorboard_writer_class
from csrv2.runs.model_card import write_model_card
from csrv2.train import objectives, relabel, sampling
from csrv2.train.balance import UsageBalancer
from csrv2.train.safeguards import GracefulStop, TrainingInterrupted, gradient_norm, non_finite


class Trainer:
    """Trains one head (SparseHead for csrv2/csr, MRLHead for mrl), and with train.backbone=full|lora the backbone
    under it, into config.output_dir. Under torchrun every rank runs this; rank 0 logs and writes.

    data: the rows to train on (csrv2.data.prepare.training_data(config) builds them from the config): `embeddings`
        (N, d) for a frozen backbone, `inputs` (texts or images) for a trainable one, `labels` (N,) for the
        supervised objectives.
    command: the command line that started the run, recorded in run.json and the README.md model card
        (`csrv2 train` passes its own); None → "trained from Python".
    """

    def __init__(self, config: Config, data: TrainingData, command: str | None = None):
        self.config = config
        self.data = data
        self.command = command
        self.run_dir = Path(config.output_dir)
        self.device = distributed.resolve_device(config.train.device)
        self.world = distributed.World()

    # -- data ------------------------------------------------------------------------------------
    def training_rows(self) -> tuple[np.ndarray | list, np.ndarray | None]:
        """What each step reads rows from — embeddings (N, d), or texts / images for a trainable backbone — and
        the labels (N,)."""
        t, data = self.config.train, self.data
        if t.objective in ("csrv2", "mrl"):
            if data.labels is None:
                raise ValueError(
                    f"{data.source}: train.objective={t.objective} needs labels for its supervised contrastive loss; "
                    "give a .npz with `labels`, or set train.objective=csr"
                )
            # Either extreme makes the supervised contrastive term exactly 0 for the whole run: with one class every
            # other row is a positive (the log-ratio is log 1), with all-distinct labels no row has a positive.
            n_classes = len(np.unique(data.labels))
            if n_classes == 1 or n_classes == len(data.labels):
                shape = "all rows share one label" if n_classes == 1 else "every row has a label of its own"
                raise ValueError(
                    f"{data.source}: {shape} ({len(data.labels)} rows), so train.objective={t.objective}'s "
                    "supervised contrastive term would be 0 for the whole run; give labels that group rows, "
                    "or set train.objective=csr"
                )
        if t.backbone == "frozen":
            if data.embeddings is None:
                raise ValueError(f"{data.source}: train.backbone=frozen trains on embeddings, and none were given")
            labels = data.labels
            if t.objective == "csrv2" and (t.subclusters or t.pseudo_label_rows):
                labels = relabel.refine_labels(
                    data.embeddings, labels, data.unlabeled, t.subclusters, t.pseudo_label_rows, t.seed
                )
            return data.embeddings, labels
        vision = self.config.backbone.kind == "vision"
        if data.inputs is None or vision != isinstance(data.inputs, np.ndarray):
            kind = "images" if vision else "texts"
            raise ValueError(
                f"{data.source}: train.backbone={t.backbone} with backbone.kind={self.config.backbone.kind} reads "
                f"{kind}; give TrainingData(inputs=<{kind}>)"
            )
        return (data.inputs if vision else list(data.inputs)), data.labels

    def batches(self, labels: np.ndarray | None, n: int, epoch: int) -> list[np.ndarray]:
        """The global batches of one epoch (identical on every rank)."""
        t = self.config.train
        if t.objective == "csr" or labels is None:
            return sampling.shuffled_batches(n, t.batch_size, t.seed, epoch)
        return sampling.class_aware_batches(labels, t.batch_size, t.samples_per_class, t.seed, epoch)

    # -- model -----------------------------------------------------------------------------------
    def build_head(self, d_in: int) -> nn.Module:
        torch.manual_seed(self.config.train.seed)
        if self.config.train.objective == "mrl":
            return MRLHead(d_in, [m for m in MRL_DIMS if m <= d_in])
        return SparseHead.from_config(d_in, self.head_config())

    def head_config(self):
        """config.head with dead_steps set from head.dead_window_firings when that is given: the steps in which a
        latent used uniformly (batch_size · k of hidden slots per step) is expected to fire that often."""
        h, batch = self.config.head, self.config.train.batch_size
        if h.dead_window_firings <= 0:
            return h
        return dataclasses.replace(h, dead_steps=max(1, math.ceil(h.dead_window_firings * h.hidden / (batch * h.k))))

    def initialise_head(self, head: nn.Module, source) -> None:
        """Data-dependent initialisation before step 0: head.b_pre_init=mean centres the head on the training rows."""
        if isinstance(head, SparseHead) and self.config.head.b_pre_init == "mean":
            if not isinstance(source, (np.ndarray, StackedRows)) or source.ndim != 2:
                raise ConfigError("head.b_pre_init=mean needs a frozen backbone (the mean of its embeddings)")
            total = np.zeros(source.shape[1], np.float64)
            for _, block in row_blocks(source, 65536):  # blocks: a memory-mapped cache is never read whole
                total += np.asarray(block, dtype=np.float64).sum(0)
            head.center(torch.from_numpy(total / len(source)))

    # -- run folder ------------------------------------------------------------------------------
    def prepare_run_dir(self) -> Path | None:
        """Rank 0 writes the resolved config first; every rank gets the checkpoint to resume from, if any."""
        if self.world.is_main:
            self._check_run_dir()
        self.world.barrier()
        if not self.config.train.resume:
            return None

        def note(line: str) -> None:
            if self.world.is_main:
                print(f"{self.run_dir}: {line}", file=sys.stderr)

        found = checkpoint.latest_good_checkpoint(self.run_dir, note)
        if found is None:
            note("train.resume=true but no usable checkpoint here; starting at step 0")
        return found

    def _check_run_dir(self) -> None:
        resolved = self.config.to_dict()
        saved = self.run_dir / CONFIG_FILE
        if self.config.train.resume:
            if saved.is_file():
                changed = _diff(Config.from_yaml(saved).to_dict(), resolved, RESUME_MAY_CHANGE)
                if changed:
                    raise ConfigError(
                        f"train.resume=true but the config differs from {saved} in {', '.join(changed)}; "
                        "resume with the same config, or start a new output_dir"
                    )
            recorded = self.run_dir / DATA_RECORD
            if recorded.is_file():
                before, now = json.loads(recorded.read_text()), self.data.fingerprint()
                changed = [
                    key for key in sorted(set(before) | set(now)) if key != "source" and before.get(key) != now.get(key)
                ]
                if changed:
                    raise ValueError(
                        f"train.resume=true but the training data differs from what {recorded} records "
                        f"({', '.join(changed)}: was {before.get('source')!r}); resume on the same data, or start "
                        "a new output_dir"
                    )
        elif (self.run_dir / METRICS_FILE).exists() or (
            self.run_dir.is_dir() and checkpoint.list_checkpoints(self.run_dir)
        ):
            raise FileExistsError(
                f"output_dir {self.run_dir} already holds a run; set train.resume=true to continue it "
                "or choose another output_dir"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(saved, yaml.safe_dump(resolved, sort_keys=False))
        atomic_write_json(self.run_dir / DATA_RECORD, self.data.fingerprint())
        provenance.record_session(self.run_dir, self.command)  # run.json: versions, git commit, command

    # -- the loop --------------------------------------------------------------------------------
    def fit(self) -> nn.Module:
        cfg, t = self.config, self.config.train
        if "tensorboard" in t.report_to:
            tensorboard_writer_class()  # a missing package fails here, before any work
        self.world = world = distributed.init_from_env(self.device)
        if world.active and self.device.type == "cuda":
            self.device = torch.device("cuda", world.local_rank)

        backbone = None
        source, labels = self.training_rows()  # (N, d) embeddings, or texts (N,) / images (N, H, W[, 3])
        if t.backbone == "frozen":
            d_in = source.shape[1]
        else:
            backbone = trainable_backbone(cfg.backbone, t).to(self.device)
            d_in = backbone.dim
        n = len(source)
        resume_from = self.prepare_run_dir()

        head = self.build_head(d_in).to(self.device)
        groups = [{"params": list(head.parameters()), "lr": t.lr}]
        if backbone is not None:
            trainable = [p for p in backbone.parameters() if p.requires_grad]
            groups.append({"params": trainable, "lr": t.backbone_lr})
        params = [p for g in groups for p in g["params"]]
        base_lrs = [g["lr"] for g in groups]
        optimizer = torch.optim.Adam(groups, eps=t.adam_eps)
        steps_per_epoch = len(self.batches(labels, n, 0))
        total = t.max_steps or t.epochs * steps_per_epoch
        if world.size * t.grad_accum_steps > t.batch_size:
            raise ConfigError(
                f"train.batch_size={t.batch_size} is smaller than ranks ({world.size}) × train.grad_accum_steps "
                f"({t.grad_accum_steps}): some micro-batches would be empty"
            )
        anneal = cfg.anneal and t.objective != "mrl"
        schedule = KAnnealing(t.k_start, cfg.head.k, total, t.decay_fraction if anneal else 0.0, cfg.head.hidden)
        modules = {"backbone": backbone} if backbone is not None else {}
        balancer = None
        if isinstance(head, SparseHead) and cfg.head.balance_rate > 0:
            balancer = UsageBalancer(cfg.head.hidden, cfg.head.balance_rate, 100 * cfg.head.balance_rate)
            modules["balancer"] = balancer.to(self.device)

        step = 0
        if resume_from is None:
            self.initialise_head(head, source)
        else:
            step = checkpoint.load_checkpoint(resume_from, head, optimizer, modules)
        metrics = MetricsLog(self.run_dir / METRICS_FILE, keep_until=step, world=world, report_to=t.report_to)

        def inputs(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
            """rows (b,) → x (b, d), reconstruction target (b, d) or None (= x), labels (b,) or None."""
            y = None if labels is None else torch.from_numpy(labels[rows]).to(self.device)
            if backbone is None:
                x = torch.from_numpy(np.asarray(take_rows(source, rows), dtype=np.float32)).to(self.device)
                return x, None, y
            with autocast(self.device, t.bf16):
                batch = source[rows] if isinstance(source, np.ndarray) else [source[i] for i in rows]
                x = backbone(batch).float()
            return x, x.detach(), y

        head.train()
        stop = GracefulStop()  # SIGINT / SIGTERM: finish this step, write a checkpoint, raise TrainingInterrupted
        epoch_cache: tuple[int, list[np.ndarray]] = (-1, [])
        bar = tqdm(
            total=total, initial=step, desc=f"train {t.objective}", dynamic_ncols=True, disable=not world.is_main
        )
        try:
            while step < total:
                if stop.agreed(world, self.device):
                    if world.is_main:
                        checkpoint.save_checkpoint(self.run_dir, step, head, optimizer, t.keep_checkpoints, modules)
                    world.barrier()
                    saved = self.run_dir / checkpoint.checkpoint_name(step)
                    raise TrainingInterrupted(
                        f"stopped by {stop.signal_name or 'a signal'} after step {step}: checkpoint {saved} written; "
                        "continue with train.resume=true"
                    )
                epoch, position = divmod(step, steps_per_epoch)
                if epoch_cache[0] != epoch:
                    epoch_cache = (epoch, self.batches(labels, n, epoch))
                local = world.shard(epoch_cache[1][position])  # contiguous: class-aware groups stay together
                k_t = schedule(step)
                warm = min(1.0, (step + 1) / t.warmup_steps) if t.warmup_steps else 1.0
                for group, base in zip(optimizer.param_groups, base_lrs):
                    group["lr"] = base * warm

                optimizer.zero_grad(set_to_none=True)
                usage = None  # (h,) rows in which each latent was active, over the micro-batches of this step
                parts: dict[
                    str, float
                ] = {}  # this step's loss parts (summed over micro-batches), for the finiteness check
                with torch.autograd.set_detect_anomaly(t.detect_anomaly):
                    for micro in np.array_split(local, t.grad_accum_steps):
                        x, target, y = inputs(np.sort(micro))  # sorted rows read a memory map sequentially
                        out = objectives.step_loss(head, x, y, k_t, t, world, target)
                        (out.loss / t.grad_accum_steps).backward()
                        values = metrics.add(out.parts)
                        parts = {name: parts.get(name, 0.0) + value for name, value in values.items()}
                        usage = objectives.merge_usage(usage, out.usage)
                distributed.average_gradients(params, world)
                if t.max_grad_norm > 0:
                    grad_norm = float(
                        torch.nn.utils.clip_grad_norm_(params, t.max_grad_norm)
                    )  # the norm before clipping
                else:  # one more read of the gradients, to check them
                    grad_norm = float(gradient_norm(params))
                fault = non_finite(parts, grad_norm, world, self.device)
                if fault:  # stop before the optimizer writes anything: the last checkpoint stays the last good state
                    raise FloatingPointError(
                        f"step {step + 1}: {fault}; no weights were updated and no checkpoint written. Lower train.lr, "
                        "set train.max_grad_norm, or rerun with train.detect_anomaly=true to find the operation"
                    )
                optimizer.step()
                if usage is not None:  # dead-latent counters count optimizer steps, over every rank's rows
                    usage = distributed.sum_across_ranks(usage, world)
                    head.advance_dead_counters(usage > 0)
                    if balancer is not None:
                        balancer.step(head.b_lat.data, usage)
                step += 1
                bar.update(1)

                if step % t.log_every == 0 or step == total:
                    dead = head.dead_fraction() * 100 if isinstance(head, SparseHead) else 0.0
                    line = metrics.flush(
                        step=step, epoch=epoch, k=k_t, lr=optimizer.param_groups[0]["lr"], dead_pct=dead
                    )
                    bar.set_postfix(loss=f"{line['loss']:.4f}", k=k_t, dead=f"{dead:.0f}%")
                if step % t.checkpoint_every == 0 or step == total:
                    if world.is_main:
                        checkpoint.save_checkpoint(self.run_dir, step, head, optimizer, t.keep_checkpoints, modules)
                    world.barrier()
        finally:
            stop.restore()  # also when the loop raises: a notebook's Ctrl-C works again
            bar.close()
            metrics.close()
        if world.is_main:
            if not cfg.data.embeddings:  # embeddings read from a file: which backbone made them is not known here
                record = backbone_record(cfg.backbone, finetuned=backbone is not None)
                atomic_write_json(self.run_dir / BACKBONE_RECORD, record)  # before the head: a saved head has it
            save_final(head, self.run_dir)
            if backbone is not None:
                save_final(backbone, self.run_dir / "backbone")
            write_model_card(self.run_dir)  # README.md; evaluation (run_eval) writes it again with its table
        world.barrier()
        return head


def save_final(module: nn.Module, folder: Path) -> None:
    """module.save_pretrained(folder) through a temporary folder, so no half-written file is ever in `folder`."""
    tmp = folder.parent / f".{folder.name}.final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    module.save_pretrained(tmp)
    replace_files_into(tmp, folder)


# Keys a resume may change: none of them changes the weights. output_dir: a run folder that was moved resumes in its
# new place; train.report_to, log_every: where and how often metrics are written; keep_checkpoints: how many old
# checkpoints stay; eval.*: what is scored after training. Entries ending in "." are prefixes.
RESUME_MAY_CHANGE = (
    "train.resume",
    "output_dir",
    "train.report_to",
    "train.log_every",
    "train.keep_checkpoints",
    "eval.",
)


def _diff(a: dict, b: dict, ignore: tuple[str, ...]) -> list[str]:
    """The dotted keys whose values differ between two config dicts (keys in `ignore`, or under a prefix there that
    ends in ".", left out)."""
    fa, fb = strict.flatten(a), strict.flatten(b)
    return [
        key
        for key in sorted(set(fa) | set(fb))
        if not any(key == i or (i.endswith(".") and key.startswith(i)) for i in ignore) and fa.get(key) != fb.get(key)
    ]
