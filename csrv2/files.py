"""Writes that a crash cannot tear: content goes to a temporary name in the same folder, then is renamed.

A rename within one file system is atomic, so a reader sees either the old file or the complete new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call write(tmp) on a temporary path beside `path`, then rename it to `path`. Returns `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | Path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def atomic_save_npy(path: str | Path, array: np.ndarray) -> Path:
    """np.save under a temporary name (np.save would append `.npy` to a name without it: write to an open file)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)

    return atomic_write(path, write)


def atomic_write_dir(folder: str | Path, write: Callable[[Path], None]) -> Path:
    """Call write(tmp_folder), then put the folder in place of `folder` (an existing one is removed first).

    Between the removal and the rename a crash leaves no `folder` at all, never a half-written one.
    """
    folder = Path(folder)
    tmp = folder.parent / f".{folder.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def replace_files_into(tmp: Path, folder: Path) -> None:
    """Move every file of the complete folder `tmp` into `folder` (each rename atomic), then remove `tmp`.

    For a folder that holds more than these files (a run folder receiving its final head)."""
    folder.mkdir(parents=True, exist_ok=True)
    for file in tmp.iterdir():
        os.replace(file, folder / file.name)
    tmp.rmdir()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_between_markers(path: Path, begin: str, end: str, body: str) -> None:
    """Replace the text between the lines `begin` and `end` of a markdown file with `body` (the markers are kept;
    appended at the end, with a title when the file is new), keeping everything around them. Written atomically."""
    path = Path(path)
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmarks\n\n"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) + 1 :]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    atomic_write_text(path, text)
