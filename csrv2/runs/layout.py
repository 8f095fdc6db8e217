"""The run folder: the name of every file a run writes, and what makes a run finished. The one place they are spelled.

<output_dir>/
    config.yaml              the resolved run config, written first (csrv2.train.trainer)
    data.json                what the run trains on (TrainingData.fingerprint), checked on resume
    run.json                 provenance of each start: package versions, git commit, command (csrv2.runs.provenance)
    metrics.jsonl            one line per logged step (csrv2.runs.metrics); tensorboard/ beside it when asked
    step_NNNNNN/             checkpoints (csrv2.runs.checkpoint)
    head.safetensors         the final head and its spec csrv2_head.json (csrv2.head.sparse_head);
                             mrl.safetensors + mrl_config.json for the MRL baseline
    csrv2_backbone.json      which backbone feeds the head (csrv2.runs.backbone_record)
    backbone/                a finetuned run's backbone
    eval.json, README.md     the scores and the model card (csrv2.runs.model_card); curves.png (csrv2 plot)
"""

from __future__ import annotations

from pathlib import Path

from csrv2.config.run_config import Config
from csrv2.head.baselines import MRL_CONFIG_NAME, MRL_WEIGHTS_NAME
from csrv2.head.sparse_head import CONFIG_NAME, LEGACY_CONFIG_NAME, WEIGHTS_NAME

CONFIG_FILE = "config.yaml"
DATA_RECORD = "data.json"
RUN_RECORD = "run.json"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
BACKBONE_RECORD = "csrv2_backbone.json"
FINETUNED_DIR = "backbone"
EVAL_FILE = "eval.json"
CARD_FILE = "README.md"
CURVES_FILE = "curves.png"


def head_saved(folder: Path, mrl: bool = False) -> bool:
    """Both files of the final head are there (each is written atomically; a SparseHead saved before its spec was
    renamed has config.json)."""
    if mrl:
        return all((folder / name).is_file() for name in (MRL_CONFIG_NAME, MRL_WEIGHTS_NAME))
    spec = any((folder / name).is_file() for name in (CONFIG_NAME, LEGACY_CONFIG_NAME))
    return spec and (folder / WEIGHTS_NAME).is_file()


def is_finished(folder: str | Path, config: Config) -> bool:
    """`folder` holds a finished run of exactly `config`: the final head, the finetuned backbone when the config trains
    one, no temporary folder of an interrupted save, and the same resolved config."""
    folder = Path(folder)
    saved = folder / CONFIG_FILE
    return (
        head_saved(folder, mrl=config.train.objective == "mrl")
        and (config.train.backbone == "frozen" or (folder / FINETUNED_DIR).is_dir())
        and not any(folder.glob(".*.tmp"))
        and saved.is_file()
        and Config.from_yaml(saved).to_dict() == config.to_dict()
    )


def holds_only_a_run(folder: str | Path) -> bool:
    """Whether `folder` may be removed to train a run there again: empty, or holding nothing but what a run writes
    (the names above, checkpoints, csrv2's hidden temporary entries). A folder with any other file is someone's."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        return False
    ours = {CONFIG_FILE, DATA_RECORD, RUN_RECORD, METRICS_FILE, TENSORBOARD_DIR, BACKBONE_RECORD, FINETUNED_DIR}
    ours |= {EVAL_FILE, CARD_FILE, CURVES_FILE, CONFIG_NAME, LEGACY_CONFIG_NAME, WEIGHTS_NAME}
    ours |= {MRL_CONFIG_NAME, MRL_WEIGHTS_NAME}
    return all(p.name in ours or p.name.startswith(("step_", ".")) for p in folder.iterdir())
