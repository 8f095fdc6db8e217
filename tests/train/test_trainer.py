"""Head training end to end on small arrays: run folder, metrics, checkpoints, exact resume, bad input."""

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import csrv2
from csrv2 import Config, SparseHead
from csrv2.config.run_config import ConfigError
from csrv2.data.prepare import TrainingData, training_data
from csrv2.data.stacked_rows import StackedRows
from csrv2.distributed import World
from csrv2.extras import MissingExtra
from csrv2.head.k_annealing import KAnnealing
from csrv2.runs.backbone_record import backbone_record
from csrv2.runs.checkpoint import verify_checkpoint
from csrv2.train import objectives
from csrv2.train.sampling import class_aware_batches
from csrv2.train.trainer import Trainer


def head_commit() -> dict:
    """What run.json should record about the code: the csrv2 checkout's HEAD, asked of git here, or unknown."""
    repo = Path(csrv2.__file__).resolve().parents[1]
    done = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True)
    if done.returncode != 0 or not (repo / ".git").exists():
        return {"commit": "unknown", "dirty": None}
    status = subprocess.run(["git", "-C", str(repo), "diff", "HEAD", "--quiet"], capture_output=True)
    return {"commit": done.stdout.strip(), "dirty": status.returncode != 0}


def clustered(n=600, d=32, classes=6, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, d))
    labels = rng.integers(0, classes, n)
    x = centers[labels] + 0.7 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


@contextlib.contextmanager
def crash_at_step(monkeypatch, step: int):
    """The body must raise a simulated crash in the `step`-th call of objectives.step_loss (a step with one micro-batch);
    step_loss is restored afterwards."""
    real_step_loss, calls = objectives.step_loss, []

    def crashing_step_loss(*args, **kwargs):
        calls.append(1)
        if len(calls) == step:
            raise RuntimeError("simulated crash")
        return real_step_loss(*args, **kwargs)

    monkeypatch.setattr(objectives, "step_loss", crashing_step_loss)
    with pytest.raises(RuntimeError, match="simulated crash"):
        yield
    monkeypatch.setattr(objectives, "step_loss", real_step_loss)


def config(tmp_path, name="run", **train):
    train = {"epochs": 3, "batch_size": 64, "log_every": 5, "checkpoint_every": 10, **train}
    return Config.from_dict({"output_dir": str(tmp_path / name), "head": {"hidden": 128, "k": 2}, "train": train})


def test_csrv2_run_folder_contents(tmp_path):
    x, y = clustered()
    cfg = config(tmp_path)
    head = Trainer(cfg, TrainingData(x, y)).fit()
    run = tmp_path / "run"
    assert Config.from_yaml(run / "config.yaml") == cfg
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["k"] > 16 and lines[-1]["k"] == 2  # annealed from hidden/4 = 32 down to k
    for key in ("loss", "recon_loss", "recon_4k_loss", "aux_loss", "contrastive_loss", "k", "lr", "dead_pct"):
        assert key in lines[-1]
    assert lines[-1]["contrastive_loss"] > 0
    assert [p.name for p in sorted(run.glob("step_*"))] == ["step_000020", "step_000030"]
    loaded = SparseHead.from_pretrained(run)
    assert torch.equal(loaded.weight, head.weight)
    assert json.loads((run / "csrv2_backbone.json").read_text()) == backbone_record(cfg.backbone, finetuned=False)
    assert not (run / "config.json").exists()  # the name transformers tools read as their own config
    # run.json: one session, started from Python, with the installed torch and the csrv2 checkout's commit
    (session,) = json.loads((run / "run.json").read_text())["sessions"]
    assert session["command"] == "trained from Python" and session["packages"]["torch"] == torch.__version__
    assert session["git"] == head_commit()
    card = (run / "README.md").read_text()
    assert "| h (head.hidden) | 128 |" in card and "| k (head.k) | 2 |" in card and "Not evaluated yet" in card


def test_training_improves_class_structure(tmp_path):
    """After CSRv2 training, k=2 codes of the same class share latents far more often than at init."""
    x, y = clustered(n=1200)
    head = Trainer(config(tmp_path, epochs=8, lr=1e-3), TrainingData(x, y)).fit()
    torch.manual_seed(0)
    untrained = SparseHead(32, 128, 2)

    def same_class_agreement(h):
        codes = h.encode(torch.from_numpy(x), k=2).to_dense().detach().numpy()
        codes /= np.linalg.norm(codes, axis=1, keepdims=True) + 1e-12
        sims = codes @ codes.T
        same = y[:, None] == y[None, :]
        return sims[same].mean() - sims[~same].mean()

    assert same_class_agreement(head) > same_class_agreement(untrained) + 0.2


def test_resume_matches_uninterrupted_run(tmp_path, monkeypatch):
    x, y = clustered()
    straight = Trainer(config(tmp_path, "a"), TrainingData(x, y)).fit()

    # Crash at step 15 (last checkpoint: step 10), then resume the same run to its end.
    with crash_at_step(monkeypatch, 15):
        Trainer(config(tmp_path, "b"), TrainingData(x, y)).fit()
    assert not (tmp_path / "b" / "head.safetensors").exists()
    resumed = Trainer(config(tmp_path, "b", resume=True), TrainingData(x, y)).fit()
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))
    assert len(json.loads((tmp_path / "b" / "run.json").read_text())["sessions"]) == 2  # the start and the resume


def test_rows_stacked_from_memory_maps_train_the_same_head_as_one_array(tmp_path):
    """A mixture's StackedRows of memory-mapped cache files (read per batch) trains exactly the head that the
    concatenated in-RAM array trains, b_pre=mean initialisation included."""
    x, y = clustered()
    for i, part in enumerate(np.split(x, [250, 420])):
        np.save(tmp_path / f"part{i}.npy", part)
    maps = [np.load(tmp_path / f"part{i}.npy", mmap_mode="r") for i in range(3)]
    in_ram = config(tmp_path, "ram", max_steps=12)
    in_ram.head.b_pre_init = "mean"
    stacked = config(tmp_path, "stacked", max_steps=12)
    stacked.head.b_pre_init = "mean"
    a = Trainer(in_ram, TrainingData(x, y)).fit()
    b = Trainer(stacked, TrainingData(StackedRows(maps), y)).fit()
    for (name, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(va, vb), name


def test_existing_run_is_not_overwritten_and_resume_checks_config(tmp_path):
    x, y = clustered(n=200)
    Trainer(config(tmp_path, max_steps=3), TrainingData(x, y)).fit()
    with pytest.raises(FileExistsError, match="train.resume=true"):
        Trainer(config(tmp_path, max_steps=3), TrainingData(x, y)).fit()
    changed = config(tmp_path, max_steps=3, lr=1e-3, resume=True)
    with pytest.raises(ConfigError, match="train.lr"):
        Trainer(changed, TrainingData(x, y)).fit()
    # what cannot change the weights may change on resume (it used to be refused like train.lr)
    harmless = config(tmp_path, max_steps=3, resume=True, log_every=1, keep_checkpoints=5)
    harmless.eval.ks, harmless.eval.after_training = [2, 4], False
    Trainer(harmless, TrainingData(x, y)).fit()
    assert Config.from_yaml(tmp_path / "run" / "config.yaml").train.log_every == 1  # the config as resumed


def test_csr_and_mrl_objectives(tmp_path):
    x, y = clustered(n=300)
    Trainer(config(tmp_path, "csr", objective="csr", max_steps=4), TrainingData(x, None)).fit()
    mrl = Trainer(config(tmp_path, "mrl", objective="mrl", max_steps=4), TrainingData(x, y)).fit()
    assert mrl.encode(torch.from_numpy(x[:3]), dim=8).shape == (3, 8)


def test_bad_training_data_is_named(tmp_path):
    x, y = clustered(n=50)
    with pytest.raises(ValueError, match="needs labels"):
        Trainer(config(tmp_path, "a"), TrainingData(x, None)).fit()
    x_bad = x.copy()
    x_bad[7, 3] = np.nan
    with pytest.raises(ValueError, match="row 7"):
        TrainingData(x_bad, y)
    np.savez(tmp_path / "wrong.npz", emb=x)
    cfg = Config.from_dict({"output_dir": str(tmp_path / "c"), "data": {"embeddings": str(tmp_path / "wrong.npz")}})
    with pytest.raises(ValueError, match="needs `embeddings`"):
        training_data(cfg)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_class_aware_batches_hold_positives_and_cover_every_row_once():
    labels = np.repeat(np.arange(10), [1, 3, 5, 7, 9, 11, 13, 2, 4, 6])
    batches = class_aware_batches(labels, 16, 4, seed=0, epoch=1)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(len(labels)))
    with_positive = sum(int((labels[b] == labels[r]).sum() > 1) for b in batches for r in b)
    assert with_positive >= len(labels) - 3
    assert all(np.array_equal(a, b) for a, b in zip(batches, class_aware_batches(labels, 16, 4, 0, 1)))


def test_first_logged_step_equals_the_objective_on_the_first_batch(tmp_path):
    """metrics.jsonl's step 1 is exactly objectives.step_loss of a fresh head on the first class-aware batch at k_0."""
    x, y = clustered(n=300)
    cfg = config(tmp_path, max_steps=1, log_every=1)
    Trainer(cfg, TrainingData(x, y)).fit()
    logged = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])

    torch.manual_seed(cfg.train.seed)
    head = SparseHead.from_config(32, cfg.head)
    rows = np.sort(class_aware_batches(y, cfg.train.batch_size, cfg.train.samples_per_class, cfg.train.seed, 0)[0])
    k0 = KAnnealing(cfg.train.k_start, cfg.head.k, 1, cfg.train.decay_fraction, cfg.head.hidden)(0)
    out = objectives.step_loss(head, torch.from_numpy(x[rows]), torch.from_numpy(y[rows]), k0, cfg.train, World())
    assert logged["k"] == k0 == 32
    for name, value in out.parts.items():
        assert logged[name] == pytest.approx(float(value.detach()), rel=1e-6, abs=1e-9), name


def test_dead_counters_count_optimizer_steps_under_gradient_accumulation(tmp_path):
    """With 4 micro-batches per step, a latent idle for the whole run has waited 3 steps, not 12 forwards."""
    x, y = clustered(n=300)
    head = Trainer(config(tmp_path, max_steps=3, grad_accum_steps=4, anneal=False), TrainingData(x, y)).fit()
    assert int(head.steps_since_fired.max()) == 3


def test_one_row_batches_train_with_auxk_on(tmp_path):
    """train.batch_size=1 with dead latents: AuxK's zero baseline must not put NaN into the weights."""
    x, y = clustered(n=40)
    cfg = Config.from_dict(
        {
            "output_dir": str(tmp_path / "run"),
            "head": {"hidden": 128, "k": 2, "k_aux": 16, "dead_steps": 0},
            "train": {"objective": "csr", "batch_size": 1, "max_steps": 6, "log_every": 1, "checkpoint_every": 6},
        }
    )
    head = Trainer(cfg, TrainingData(x, y)).fit()
    assert all(torch.isfinite(p).all() for p in head.parameters())
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["dead_pct"] > 0 and all(line["aux_loss"] == 0.0 for line in lines)


def test_a_non_finite_step_stops_before_any_weight_or_checkpoint_is_written(tmp_path):
    """lr = 1e9 blows the weights up; the step whose loss or gradient is not finite is named, and every checkpoint
    left in the run folder holds finite tensors (the last good one is kept)."""
    x, y = clustered(n=300)
    cfg = config(tmp_path, lr=1e9, max_steps=40, checkpoint_every=1, log_every=20)
    with pytest.raises(FloatingPointError, match=r"step \d+: non-finite .*no checkpoint written") as err:
        Trainer(cfg, TrainingData(x, y)).fit()
    failed_step = int(str(err.value).split(":")[0].split()[1])
    kept = sorted((tmp_path / "run").glob("step_*"))
    assert kept and all(int(p.name[5:]) < failed_step for p in kept)
    for folder in kept:
        head = SparseHead.from_pretrained(folder)
        assert all(torch.isfinite(t).all() for t in head.state_dict().values() if t.is_floating_point()), folder.name


def test_resume_drops_a_torn_last_metrics_line(tmp_path, capsys):
    """A kill in the middle of writing metrics.jsonl leaves half a line: resume drops it with a note and goes on."""
    x, y = clustered(n=200)
    Trainer(config(tmp_path, max_steps=10, log_every=2, checkpoint_every=4), TrainingData(x, y)).fit()
    metrics = tmp_path / "run" / "metrics.jsonl"
    whole = metrics.read_text().splitlines()
    metrics.write_text("\n".join(whole[:2]) + "\n" + whole[2][:15])  # lines of steps 2, 4, then a torn one
    for late in ("step_000008", "step_000010"):  # as if killed after step 4's checkpoint
        shutil.rmtree(tmp_path / "run" / late)
    Trainer(config(tmp_path, max_steps=10, log_every=2, checkpoint_every=4, resume=True), TrainingData(x, y)).fit()
    assert "dropped a torn last line" in capsys.readouterr().err
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == [2, 4, 6, 8, 10]


def test_a_corrupted_checkpoint_is_named_and_the_one_before_it_resumes(tmp_path, capsys):
    """Checkpoints record the sha256 of every file; resume verifies the latest, names the broken file, falls back to
    the previous good one, and still ends on the uninterrupted run's weights."""
    x, y = clustered(n=300)
    straight = Trainer(config(tmp_path, "a", max_steps=12, checkpoint_every=4), TrainingData(x, y)).fit()
    Trainer(config(tmp_path, "b", max_steps=12, checkpoint_every=4), TrainingData(x, y)).fit()
    run = tmp_path / "b"
    (run / "head.safetensors").unlink()
    shutil.rmtree(run / "step_000012")  # killed after step 8's checkpoint, whose weights then rot on disk
    weights = run / "step_000008" / "head.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-5] ^= 0xFF
    weights.write_bytes(bytes(blob))
    resumed = Trainer(config(tmp_path, "b", max_steps=12, checkpoint_every=4, resume=True), TrainingData(x, y)).fit()
    err = capsys.readouterr().err
    assert "step_000008 is broken" in err and "head.safetensors does not match its recorded sha256" in err
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_checkpoint_written_before_the_head_spec_rename_resumes(tmp_path):
    """A checkpoint laid out by the version before csrv2_head.json (spec in config.json, state.json recording its
    sha256) passes verification and resumes to the uninterrupted run's weights; the final head uses the new name."""
    x, y = clustered(n=300)
    straight = Trainer(config(tmp_path, "a", max_steps=12, checkpoint_every=4), TrainingData(x, y)).fit()
    Trainer(config(tmp_path, "b", max_steps=12, checkpoint_every=4), TrainingData(x, y)).fit()
    run = tmp_path / "b"
    for name in ("head.safetensors", "csrv2_head.json", "csrv2_backbone.json"):
        (run / name).unlink()
    shutil.rmtree(run / "step_000012")  # killed after step 8's checkpoint
    old = run / "step_000008"
    (old / "csrv2_head.json").rename(old / "config.json")
    state = json.loads((old / "state.json").read_text())
    state["sha256"]["config.json"] = state["sha256"].pop("csrv2_head.json")
    for key in ("format", "state_sha256"):  # that version's state.json did not hash itself
        state.pop(key)
    (old / "state.json").write_text(json.dumps(state, indent=1) + "\n")
    (old / "csrv2_output.json").unlink()  # nor did it mark its folders
    assert sorted(p.name for p in old.iterdir()) == [
        "config.json", "head.safetensors", "optimizer.pt", "rng.pt", "state.json"
    ]  # fmt: skip
    assert verify_checkpoint(old) == ""
    resumed = Trainer(config(tmp_path, "b", max_steps=12, checkpoint_every=4, resume=True), TrainingData(x, y)).fit()
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    assert (run / "csrv2_head.json").is_file() and not (run / "config.json").exists()


def test_a_moved_run_folder_resumes(tmp_path):
    """output_dir is where the run is now: a folder moved after a crash resumes there to the same weights."""
    x, y = clustered(n=300)
    straight = Trainer(config(tmp_path, "a", max_steps=12, checkpoint_every=4), TrainingData(x, y)).fit()
    Trainer(config(tmp_path, "b", max_steps=12, checkpoint_every=4), TrainingData(x, y)).fit()
    (tmp_path / "b" / "head.safetensors").unlink()
    shutil.rmtree(tmp_path / "b" / "step_000012")  # killed after step 8's checkpoint
    shutil.move(tmp_path / "b", tmp_path / "moved")
    moved = config(tmp_path, "moved", max_steps=12, checkpoint_every=4, resume=True)
    resumed = Trainer(moved, TrainingData(x, y)).fit()
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    with pytest.raises(ConfigError, match="train.lr"):  # a changed setting is still refused
        Trainer(config(tmp_path, "moved", max_steps=12, lr=1e-2, resume=True), TrainingData(x, y)).fit()


@pytest.mark.slow
def test_sigint_finishes_the_step_writes_a_checkpoint_and_resumes_bit_exact(tmp_path):
    """A real `csrv2 train` process gets SIGINT mid-run: it exits 130 with one line naming the checkpoint of the
    last finished step, and resuming from it ends on the uninterrupted run's weights."""
    x, y = clustered(n=400, d=8)
    np.savez(tmp_path / "train.npz", embeddings=x, labels=y)
    args = [f"data.embeddings={tmp_path / 'train.npz'}", "head.hidden=32", "head.k=2", "train.batch_size=16"]
    args += ["train.max_steps=600", "train.log_every=1", "train.checkpoint_every=100000", "eval.ks=[2]"]
    run = tmp_path / "run"
    command = [sys.executable, "-m", "csrv2.cli", "train", *args, f"output_dir={run}"]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    metrics = run / "metrics.jsonl"
    while time.time() < deadline and proc.poll() is None and not (metrics.is_file() and metrics.stat().st_size):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert "stopped by SIGINT after step" in last and "train.resume=true" in last
    step = int(last.split("after step ")[1].split(":")[0])
    assert 0 < step < 600 and (run / f"step_{step:06d}").is_dir() and not (run / "head.safetensors").exists()

    cfg = Config.from_dict({}, [*args, f"output_dir={run}", "train.resume=true"])  # what the command ran, resumed
    resumed = Trainer(cfg, TrainingData(x, y)).fit()
    straight_cfg = Config.from_dict(cfg.to_dict(), ["train.resume=false", f"output_dir={tmp_path / 'straight'}"])
    straight = Trainer(straight_cfg, TrainingData(x, y)).fit()
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name


def test_training_data_that_cannot_train_is_refused_before_any_work(tmp_path):
    """Degenerate labels under a supervised objective and non-unit embeddings are named; no run folder appears."""
    x, y = clustered(n=60)
    for labels, shape in ((np.zeros(60, np.int64), "all rows share one label"), (np.arange(60), "a label of its own")):
        with pytest.raises(ValueError, match=shape):
            Trainer(config(tmp_path, "a"), TrainingData(x, labels)).fit()
    Trainer(config(tmp_path, "csr", objective="csr", max_steps=2), TrainingData(x, np.arange(60))).fit()  # csr: fine
    scaled, zero = x.copy(), x.copy()
    scaled[5] *= 3.0
    zero[9] = 0.0
    with pytest.raises(ValueError, match=r"row 5 has L2 norm 3 .*L2-normalised"):
        TrainingData(scaled, y)
    with pytest.raises(ValueError, match="row 9 is all zeros"):
        TrainingData(zero, y)
    TrainingData(scaled, y, unit_rows=False)  # backbone.normalize=false: the user's choice
    assert not (tmp_path / "a").exists()


def test_resume_refuses_changed_training_data(tmp_path):
    """The run folder records what it trained on (data.json); resuming on other rows is refused, naming the change."""
    x, y = clustered(n=300)
    Trainer(config(tmp_path, max_steps=8, checkpoint_every=4), TrainingData(x, y, source="v1")).fit()
    record = json.loads((tmp_path / "run" / "data.json").read_text())
    assert record["rows"] == 300 and record["width"] == 32 and record["source"] == "v1"
    (tmp_path / "run" / "head.safetensors").unlink()
    shutil.rmtree(tmp_path / "run" / "step_000008")
    relabelled = y.copy()
    relabelled[:10] = (relabelled[:10] + 1) % 6
    with pytest.raises(ValueError, match=r"training data differs .*labels_sha256.*was 'v1'"):
        Trainer(config(tmp_path, max_steps=8, checkpoint_every=4, resume=True), TrainingData(x, relabelled)).fit()
    Trainer(config(tmp_path, max_steps=8, checkpoint_every=4, resume=True), TrainingData(x, y, source="v1")).fit()


# -- live-latent options (docs/general-head.md) -------------------------------------------------------------------------


def test_b_pre_init_mean_centres_the_pre_activations_on_the_training_rows(tmp_path):
    x, y = clustered()
    x = x + 0.5  # a shared offset, as anisotropic embeddings have
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    cfg = Config.from_dict({"output_dir": str(tmp_path / "r"), "head": {"hidden": 64, "k": 2, "b_pre_init": "mean"}})
    trainer = Trainer(cfg, TrainingData(x, y))
    head = trainer.build_head(x.shape[1])
    trainer.initialise_head(head, x)
    torch.testing.assert_close(head.b_pre.detach(), torch.from_numpy(x.mean(0)), rtol=0, atol=1e-6)
    pre = head.pre_activations(torch.from_numpy(x)).detach()
    assert pre.mean(0).abs().max() < 1e-5 < pre.std(0).min()
    with pytest.raises(ConfigError, match="b_pre_init=mean needs"):
        trainer.initialise_head(head, ["texts", "not", "embeddings"])


def test_dead_window_in_expected_firings_sets_dead_steps(tmp_path):
    """f · h / (batch · k) steps, rounded up: 0.6 · 1536 / (128 · 2) = 3.6 → 4; 0 keeps head.dead_steps."""
    x, y = clustered(n=50)
    for firings, want in ((0.6, 4), (10.0, 60), (0.0, 100)):
        cfg = Config.from_dict({"head": {"hidden": 1536, "k": 2, "dead_window_firings": firings}})
        assert Trainer(cfg, TrainingData(x, y)).build_head(32).config.dead_steps == want


def test_balancing_spreads_usage_and_resumes_exactly(tmp_path, monkeypatch):
    """head.balance_rate moves b_lat by the sign rule after every step (its shift is checkpointed: an interrupted
    run resumes bit-exact) and leaves more latents in use than the same run without it."""
    x, y = clustered()

    def run(name, rate, **train):
        cfg = config(tmp_path, name, anneal=False, **train)
        cfg.head.balance_rate = rate
        return Trainer(cfg, TrainingData(x, y)).fit()

    def n_live(head):
        return len(torch.unique(head.encode(torch.from_numpy(x)).indices))

    plain, balanced = run("plain", 0.0), run("balanced", 0.01)
    assert n_live(balanced) > n_live(plain)
    assert (tmp_path / "balanced" / "step_000030" / "balancer.module.safetensors").is_file()

    with crash_at_step(monkeypatch, 15):
        run("b", 0.01)
    resumed = run("b", 0.01, resume=True)
    for (name, a), (_, b) in zip(balanced.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name


def test_subclusters_refine_the_labels_the_contrastive_loss_sees(tmp_path):
    x, y = clustered(n=200, classes=2)
    cfg = config(tmp_path, subclusters=3)
    source, labels = Trainer(cfg, TrainingData(x, y)).training_rows()
    assert len(np.unique(labels)) == 6
    assert all(len(np.unique(y[labels == c])) == 1 for c in np.unique(labels))  # sub-classes never mix classes


def test_report_to_tensorboard_writes_the_metrics_lines(tmp_path):
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator", reason="needs tensorboard (csrv2[tensorboard])"
    )
    x, y = clustered(n=300)
    Trainer(config(tmp_path, max_steps=10, report_to=["tensorboard"]), TrainingData(x, y)).fit()
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    events = event_accumulator.EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == set(lines[0]) - {"step"}
    for key in ("loss", "contrastive_loss", "k", "lr", "dead_pct"):
        got = [(e.step, e.value) for e in events.Scalars(key)]
        assert [s for s, _ in got] == [line["step"] for line in lines] == [5, 10]
        np.testing.assert_allclose([v for _, v in got], [line[key] for line in lines], rtol=1e-6)  # float32 events


def test_report_to_without_tensorboard_names_the_extra_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    x, y = clustered(n=100)
    with pytest.raises(
        MissingExtra, match=r"needs tensorboard, which is not installed: pip install 'csrv2\[tensorboard\]'"
    ):
        Trainer(config(tmp_path, max_steps=2, report_to=["tensorboard"]), TrainingData(x, y)).fit()
    assert not (tmp_path / "run").exists()
