import dataclasses
import typing
from pathlib import Path

import pytest

from csrv2.config.run_config import Config
from csrv2.config.strict import ConfigError, field_docs, read_yaml
from csrv2.experiments.bench.engines import EnginesConfig
from csrv2.experiments.bench.retrieval import BenchConfig
from csrv2.experiments.bench.scale import ScaleConfig
from csrv2.experiments.paper.grid import GridConfig
from csrv2.experiments.research.folds import FoldsConfig

CONFIG_ROOT = Path(__file__).parents[2] / "configs"
CONFIGS = sorted(CONFIG_ROOT.rglob("*.yaml"))


def loader_for(path: Path):
    """Run configs load as Config; configs/<family>/ files load with their family's own strict loader."""
    family = path.relative_to(CONFIG_ROOT).parts[0]
    if family == "bench":  # csrv2 bench's kinds: the scale benchmark names its `stages`, the engines one `engines`
        raw = read_yaml(path)
        if "stages" in raw:
            return ScaleConfig.from_yaml
        return EnginesConfig.from_yaml if "engines" in raw else BenchConfig.from_yaml
    if family == "paper":
        return GridConfig.from_yaml
    if family == "research":
        return FoldsConfig.from_yaml
    return Config.from_yaml


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(CONFIG_ROOT)) for p in CONFIGS])
def test_every_config_file_loads(path):
    config = loader_for(path)(path)
    if isinstance(config, FoldsConfig):
        config.validate()  # builds every arm's Config


def test_overrides_and_types(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("head:\n  k: 4\ntrain:\n  lr: 1e-4\n")
    config = Config.from_yaml(path, ["train.lr=3e-4", "eval.ks=[2, 4]", "train.anneal=false"])
    assert config.head.k == 4 and config.train.lr == 3e-4 and config.eval.ks == [2, 4]
    assert config.train.anneal is False and not config.anneal


@pytest.mark.parametrize(
    "yaml_text, overrides, message",
    [
        ("head:\n  kk: 4\n", [], "unknown key head.kk; valid keys in head: hidden, k,"),
        ("trian:\n  lr: 1\n", [], "unknown key trian; valid keys in the top level"),
        ("train:\n  lr: fast\n", [], "train.lr must be a number"),
        ("head:\n  k: 2.5\n", [], "head.k must be an integer"),
        ("train:\n  objective: csr3\n", [], "train.objective='csr3' is not valid; choose one of 'csrv2', 'csr', 'mrl'"),
        ("head:\n  k: 4000\n", [], "head.k=4000 must be ≤ head.hidden=1536"),
        ("", ["train.k_start=4", "head.k=8"], "train.k_start=4 must be ≥ head.k=8"),
        ("", ["train.decay_fraction=2"], "train.decay_fraction must lie in [0, 1]"),
        ("", ["train.resume=yes please"], "train.resume must be true or false"),
        ("head: 3\n", [], "head must be a mapping"),
        ("- a\n", [], "top level must be a mapping"),
        ("", ["train.lr"], "must look like section.key=value"),
        ("", ["head.k=0"], "head.k must be > 0"),
        ("", ["eval.ks=[2, 99999]"], "eval.ks [99999] must lie in"),
        ("", ["train.temperature=.nan"], "train.temperature=nan is not a finite number"),
        ("", ["train.contrastive_coef=.inf"], "train.contrastive_coef=inf is not a finite number"),
        ("", ["train.adam_eps=0"], "train.adam_eps must be > 0"),
        ("", ["train.seed=9223372036854775808"], "train.seed=9223372036854775808 does not fit a 64-bit integer"),
        ("", ["train.lr=1e400"], "train.lr=inf is not a finite number"),
        ("? [a, b]\n: 1\n", [], "line 1: key ['a', 'b'] is a list; keys are names"),
        ("train: {? {a: 1} : 2}\n", [], "key {'a': 1} is a dict; keys are names"),
        ("", ["train.seed=-1"], "train.seed must be ≥ 0"),
        ("", ["train.distill_coef=-0.1"], "train.distill_coef must be ≥ 0"),
        ("", ["train.objective=mrl", "train.distill_coef=0.1"], "train.distill_coef needs sparse codes"),
        ("", ["output_dir="], "output_dir is empty"),
        ("", ["train.report_to=[wandb]"], "train.report_to[0]='wandb' is not valid; choose one of 'tensorboard'"),
        ("", ["train.report_to=tensorboard"], "train.report_to must be a list"),
        (
            "data:\n  tasks: [{name: t, path: x.csv, test_fraction: 1.5}]\n",
            [],
            "data.tasks[t].test_fraction must lie in",
        ),
    ],
)
def test_bad_config_names_the_key(tmp_path, yaml_text, overrides, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        Config.from_yaml(path, overrides)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Config.from_yaml(tmp_path / "nope.yaml")


def test_every_field_has_a_docstring():
    def walk(cls):
        docs = field_docs(cls)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            assert docs.get(f.name), f"{cls.__name__}.{f.name} has no docstring"
            inner = typing.get_args(hints[f.name]) or (hints[f.name],)
            for sub in inner:
                if dataclasses.is_dataclass(sub):
                    walk(sub)

    walk(Config)
    assert "head.k_aux" in Config.describe()


def test_yaml_round_trip(tmp_path):
    config = Config.from_dict({"head": {"k": 2}, "data": {"tasks": [{"name": "mine", "path": "x.csv"}]}})
    config.to_yaml(tmp_path / "c.yaml")
    assert Config.from_yaml(tmp_path / "c.yaml") == config


def test_loss_weights_of_an_old_run_folder_move_to_train():
    """Run folders written before the loss weights moved from head to train still load (and resume)."""
    old = Config.from_dict({"head": {"k": 2, "aux_coef": 0.5, "recon_4k_coef": 0.25}})
    assert (old.train.aux_coef, old.train.recon_4k_coef) == (0.5, 0.25)
    assert old == Config.from_dict({"head": {"k": 2}, "train": {"aux_coef": 0.5, "recon_4k_coef": 0.25}})
    with pytest.raises(ConfigError, match="head.aux_coef and train.aux_coef are both set"):
        Config.from_dict({"head": {"aux_coef": 0.5}, "train": {"aux_coef": 0.1}})


def test_a_key_given_twice_is_refused_with_its_line(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("train:\n  lr: 1e-4\n  epochs: 3\n  lr: 3e-4\n")
    with pytest.raises(ConfigError, match=r"line 4: key 'lr' appears twice"):
        Config.from_yaml(path)


def test_overrides_never_change_the_callers_dict():
    raw = {"train": {"lr": 1e-4}}
    Config.from_dict(raw, ["train.lr=3e-4", "head.k=4"])
    assert raw == {"train": {"lr": 1e-4}}


def test_every_loader_refuses_seeds_beyond_int64_and_non_finite_numbers(tmp_path):
    """The grid's and the benchmark's configs went through the same loader without these checks: a seed ≥ 2^63
    failed in torch.manual_seed hours in, a NaN temperature trained on NaN; an unhashable YAML key was a TypeError."""
    from csrv2.experiments.bench.retrieval import BenchConfig
    from csrv2.experiments.paper.grid import GridConfig

    cases = [
        (GridConfig, "tasks: [r8]\nseeds: [0, 9223372036854775808]\n", "seeds[1]=9223372036854775808 does not fit"),
        (GridConfig, "tasks: [r8]\nbase: {train: {temperature: .nan}}\n", "base.train.temperature=nan is not a finite"),
        (BenchConfig, "seed: 18446744073709551616\n", "seed=18446744073709551616 does not fit a 64-bit integer"),
        (BenchConfig, "? [x]\n: 1\n", "key ['x'] is a list"),
    ]
    for loader, text, message in cases:
        path = tmp_path / "c.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError) as err:
            loader.from_yaml(path)
        assert message in str(err.value), (loader.__name__, str(err.value))
