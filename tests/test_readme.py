"""README.md runs as written: every command it shows is known here, and its main job and snippets run in order.

A newcomer runs README.md top to bottom. The commands are read from its ```bash blocks and the snippets from its
```python and ```yaml blocks, so a change to the README is tested without editing this file. Commands that take an
hour (embedding ~120k texts, a whole paper table) are listed in LONG with the reason and only checked to name a
shipped config; the main job runs with a step cap (the one change made to a command), everything else as written.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from csrv2 import cli

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SETUP = {  # what a newcomer runs to get here: this test runs inside the second one
    'pip install torch==2.13.0 && pip install -e ".[dev,extras]"',
    "python -m pytest -q",
}
LONG = {  # command → why it is not run here (checked to name a shipped config)
    "csrv2 train --config general_minilm": "embeds ~120k texts of 24 tasks, then trains 20,000 steps",
    "csrv2 eval --config paper/text_small": "trains 6 methods × 6 tasks × 3 k",
    "csrv2 eval --config paper/text": "trains 6 methods × 11 tasks × 6 k",
}
STEP_CAP = ["train.max_steps=20"]  # appended to the `csrv2 train` commands that run here


def capped(args: list[str], cwd: Path | None = None) -> list[str]:
    """A `csrv2 train` command with the step cap, writing where the command as shown writes: the cap is an override
    that changes the head, so on its own it would give the run a folder of its own (csrv2.config.run_folder). cwd:
    where the command runs (a YAML path in it is read from there)."""
    from csrv2.config.run_folder import run_folder

    parsed = cli.build_parser().parse_args(args[1:])
    if parsed.describe:
        return args
    config = parsed.config
    if config and cwd is not None and (cwd / config).is_file():
        config = str(cwd / config)
    folder = run_folder(cli.find_config(config) if config else None, parsed.overrides)
    return [*args, *STEP_CAP, f"output_dir={folder}"]


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def commands() -> list[str]:
    """The shell commands of README.md, comments stripped, continuation lines joined, in order."""
    found = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                found.append(" ".join(line.split()))
    return found


def test_the_readme_shows_commands_and_snippets():
    assert "csrv2 train --config quickstart" in commands() and len(blocks("python")) >= 3


@pytest.mark.parametrize("command", commands())
def test_every_readme_command_is_known(command):
    """Each command is set-up, long (with a reason), or a `csrv2` command whose config is shipped."""
    if command in SETUP:
        return
    args = shlex.split(command)
    assert args[0] == "csrv2", f"README command not covered by tests/test_readme.py: {command}"
    parsed = cli.build_parser().parse_args(args[1:])
    if getattr(parsed, "config", None):
        cli.find_config(parsed.config)  # a shipped name or a file: raises naming the shipped ones otherwise


def write_corpus_jsonl(folder: Path) -> None:
    """The README's `csrv2 index build` reads corpus.jsonl ({"id", "text"}): 300 real R8 test articles."""
    from csrv2.data.catalog import get_task

    test = get_task("r8").splits["test"]
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as f:
        for i, text in enumerate(test.texts[:300]):
            f.write(json.dumps({"id": f"r8-{i}", "text": text}) + "\n")


def write_tickets_csv(folder: Path) -> None:
    """The README's own-data example needs tickets.csv (body, queue): 300 real Reuters R8 articles stand in."""
    from csrv2.data.catalog import get_task

    task = get_task("r8")
    train = task.splits["train"]
    with open(folder / "tickets.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["body", "queue"])
        for text, label in list(zip(train.texts, train.labels, strict=True))[:300]:
            writer.writerow([text, task.label_names[int(label)]])


@pytest.mark.slow
def test_the_readme_runs_in_order(tmp_path, minilm):
    """The main job (step-capped), the own-data YAML on a csv, then every Python snippet in one process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}

    def run(args: list[str]) -> str:
        done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{shlex.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        return done.stdout

    write_corpus_jsonl(tmp_path)
    for command in commands():
        if command in SETUP or command in LONG:
            continue
        args = shlex.split(command)
        if args[:2] == ["csrv2", "train"]:
            args = capped(args, tmp_path)
        out = run([sys.executable, "-m", "csrv2.cli", *args[1:]])
        if args[1:4] == ["train", "--config", "quickstart"]:
            assert "| r8 | classification |" in out  # the printed table
        if args[1] == "search":
            assert "r8-" in out  # ids of the corpus, with their scores and texts

    (yaml_block,) = [b for b in blocks("yaml") if "tickets" in b]
    (tmp_path / "tickets.yaml").write_text(yaml_block, encoding="utf-8")
    write_tickets_csv(tmp_path)
    first_line = yaml_block.splitlines()[0]  # "# tickets.yaml — csrv2 train --config tickets.yaml"
    shown = shlex.split(first_line.split("—", 1)[1])
    assert shown == ["csrv2", "train", "--config", "tickets.yaml"]
    assert "| tickets | classification |" in run([sys.executable, "-m", "csrv2.cli", *capped(shown, tmp_path)[1:]])

    (tmp_path / "snippets.py").write_text("\n\n".join(blocks("python")), encoding="utf-8")
    run([sys.executable, "snippets.py"])
    assert (tmp_path / "runs" / "index").is_dir() and (tmp_path / "runs" / "quickstart-st" / "modules.json").is_file()
