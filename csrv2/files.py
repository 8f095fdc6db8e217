"""Writes that a crash cannot tear, and folder saves that replace only what they wrote.

Files: content goes to a temporary name in the same folder, then is renamed. A rename within one file system is
atomic, so a reader sees either the old file or the complete new one. Files get the mode the umask allows (0666 &
~umask), as a plain open() would: a run on a shared machine is as readable as the user's other files.

Folders (`atomic_write_dir`): each writer fills its own temporary folder `.NAME.<random>.tmp` beside the target; the
swap then runs under an exclusive lock (`.NAME.lock`, flock, removed after): the old folder is renamed aside to
`.NAME.replaced`, the new one renamed in, and only then is the old one removed. A writer killed at any moment leaves
the old folder or the new one — or, between the two renames, the old one under `.NAME.replaced`, which
`recover_dir` (called by every loader, and by the next save) puts back. Every saved folder holds `csrv2_output.json`
naming its kind; a save replaces only a folder of the same kind written by csrv2, and refuses anything else — a
user's own folder, a run folder, the current directory — with one line naming it. `open_snapshot` is the reading
side: every file of one save, even while another save swaps the folder.

Also here: digests beside cache files (`record_digest` / `digest_problem`: a file without its digest is not trusted)
and `subfolder_inside`, which refuses a folder a saved model names that leads out of it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import BinaryIO

import numpy as np

try:  # POSIX: concurrent saves of one folder swap one at a time
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock (one writer per folder is the user's to ensure)
    fcntl = None

MARKER = "csrv2_output.json"  # {"written_by": "csrv2", "kind": ...} in every folder atomic_write_dir saves
ASIDE_SUFFIX = ".replaced"
TMP_SUFFIX = ".tmp"
STALE_SECONDS = 3600  # a temporary folder untouched this long belongs to a dead writer


def umask() -> int:
    """The process umask, read without changing it where /proc allows (os.umask can only be read by setting it)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def honour_umask(path: str | Path, directory: bool = False) -> None:
    """chmod a file to 0666 & ~umask (a folder to 0777 & ~umask): mkstemp / mkdtemp create 0600 / 0700."""
    os.chmod(path, (0o777 if directory else 0o666) & ~umask())


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call write(tmp) on a temporary path beside `path`, then rename it to `path`. Returns `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        honour_umask(tmp)
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


class RefusedFolder(FileExistsError):
    """A save's target exists and is not a previous output of the same kind written by csrv2: nothing was written."""


def output_kind(folder: Path) -> str | None:
    """The kind that `folder`'s csrv2_output.json names; None without a readable marker written by csrv2."""
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("written_by") != "csrv2" or not isinstance(marker.get("kind"), str):
        return None
    return marker["kind"]


def aside_path(folder: Path) -> Path:
    """Where a save keeps the old folder between its two renames."""
    return folder.parent / f".{folder.name}{ASIDE_SUFFIX}"


def _absolute(folder: str | Path) -> Path:
    """An absolute path without resolving links ("." → the current directory's path, so its name is never "")."""
    return Path(os.path.abspath(folder))


def check_replaceable(folder: str | Path, kind: str, legacy: Callable[[Path], bool] | None = None) -> None:
    """Raise RefusedFolder unless `folder` is absent or a folder of `kind` that csrv2 wrote (its marker names
    `kind`; or, for folders saved before markers existed, `legacy(folder)` recognises it)."""
    folder = _absolute(folder)
    if not os.path.lexists(folder):
        return
    cwd = Path(os.getcwd())
    why = None
    if folder.is_symlink():
        why = "it is a symbolic link (save to the folder it points to)"
    elif not folder.is_dir():
        why = "it is a file"
    elif folder == cwd or folder in cwd.parents:
        why = "it is or holds the current directory"
    elif output_kind(folder) != kind and not (output_kind(folder) is None and legacy is not None and legacy(folder)):
        found = output_kind(folder)
        why = f"it holds a csrv2 {found}" if found else f"it is not a {kind} written by csrv2 (no {MARKER})"
    if why:
        raise RefusedFolder(
            f"{folder}: refusing to replace it with a {kind}: {why}; remove it yourself or save elsewhere"
        )


@contextlib.contextmanager
def swap_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on `folder`'s swap (flock on `.NAME.lock` beside it, removed on release).

    A waiter that wakes on a lock file its holder already removed retries on the new one, so two holders never
    overlap. The kernel drops the lock of a killed process: a dead writer never blocks the next one."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    path = folder.parent / f".{folder.name}.lock"
    while True:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held = os.fstat(fd)
            try:
                now = os.stat(path)
            except FileNotFoundError:
                now = None
        except BaseException:
            os.close(fd)
            raise
        if now is not None and (now.st_ino, now.st_dev) == (held.st_ino, held.st_dev):
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def _settle(folder: Path) -> None:
    """Under the swap lock: finish what a killed save left. The old folder back in place when the new one never
    arrived; a leftover old folder removed when the new one did; temporary folders of dead writers removed."""
    aside = aside_path(folder)
    if os.path.lexists(aside):
        if os.path.lexists(folder):
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(aside, folder)
    for tmp in folder.parent.glob(f".{glob_escape(folder.name)}.*{TMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            if time.time() - tmp.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(tmp, ignore_errors=True)


def glob_escape(name: str) -> str:
    """`name` with glob's special characters taken literally."""
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


def recover_dir(folder: str | Path) -> None:
    """Put back the old folder a save killed between its two renames left under `.NAME.replaced` (and drop such a
    copy when the new folder is in place). Loaders call it first; it costs one lstat when there is nothing to do."""
    folder = _absolute(folder)
    if not os.path.lexists(aside_path(folder)):
        return
    try:
        with swap_lock(folder):
            _settle(folder)
    except PermissionError:  # a read-only parent: the loader names the missing folder and the copy beside it
        pass


def open_snapshot(folder: str | Path, names: tuple[str, ...]) -> dict[str, BinaryIO | None]:
    """Open the files `names` of a saved folder as one snapshot: {name: binary file, or None where it is absent}.

    A save may swap the folder at any moment. The folder is opened once (a directory descriptor) and every file
    through it, so all of them come from the same save even when a new one takes its place meanwhile (an open file
    outlives its removal); when a file was missing because the folder was swapped while opening, it is opened again.
    A folder a killed save left moved aside is put back first (recover_dir). The caller closes the files."""
    folder = _absolute(folder)
    if not hasattr(os, "O_DIRECTORY") or os.open not in os.supports_dir_fd:  # pragma: no cover - Windows
        return {n: open(folder / n, "rb") if (folder / n).is_file() else None for n in names}  # noqa: SIM115
    for _ in range(10):
        recover_dir(folder)
        try:
            dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            if os.path.lexists(aside_path(folder)):  # mid-swap: recover_dir waits for the swap's lock
                continue
            raise
        files: dict[str, BinaryIO | None] = {}
        try:
            for name in names:
                try:
                    files[name] = os.fdopen(os.open(name, os.O_RDONLY, dir_fd=dfd), "rb")
                except (FileNotFoundError, IsADirectoryError):
                    files[name] = None
            opened = os.fstat(dfd)
        finally:
            os.close(dfd)
        try:
            now = os.stat(folder)
        except FileNotFoundError:
            now = None
        swapped = now is None or (now.st_ino, now.st_dev) != (opened.st_ino, opened.st_dev)
        if not (swapped and None in files.values()):
            return files
        for file in files.values():
            if file is not None:
                file.close()
    raise OSError(f"{folder}: replaced by other saves faster than it could be opened")


def atomic_write_dir(
    folder: str | Path, write: Callable[[Path], None], kind: str, legacy: Callable[[Path], bool] | None = None
) -> Path:
    """Call write(tmp_folder), then put the complete folder in place of `folder`; returns `folder` (absolute).

    kind names the output ("SparseIndex", ...): it is recorded in the folder's csrv2_output.json, and an existing
    `folder` is replaced only when it is a csrv2 output of that kind (`legacy(folder)` recognises ones saved before
    markers existed); anything else raises RefusedFolder before write runs. Concurrent writers each fill their own
    temporary folder and swap one at a time: the folder ends up one writer's complete output, never a mix.
    """
    folder = _absolute(folder)
    check_replaceable(folder, kind, legacy)  # before any work
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=TMP_SUFFIX, dir=folder.parent))
    try:
        honour_umask(tmp, directory=True)
        write(tmp)
        (tmp / MARKER).write_text(json.dumps({"written_by": "csrv2", "kind": kind}) + "\n", encoding="utf-8")
        with swap_lock(folder):
            _settle(folder)
            check_replaceable(folder, kind, legacy)  # again: something may have appeared there meanwhile
            aside = aside_path(folder)
            if os.path.lexists(folder):
                os.replace(folder, aside)
            try:
                os.replace(tmp, folder)
            except BaseException:
                if os.path.lexists(aside) and not os.path.lexists(folder):
                    os.replace(aside, folder)
                raise
            shutil.rmtree(aside, ignore_errors=True)
    finally:
        if os.path.lexists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def replace_files_into(tmp: Path, folder: Path) -> None:
    """Move every file of the complete folder `tmp` into `folder` (each rename atomic), then remove `tmp`.

    For a folder that holds more than these files (a run folder receiving its final head)."""
    folder.mkdir(parents=True, exist_ok=True)
    for file in tmp.iterdir():
        os.replace(file, folder / file.name)
    tmp.rmdir()


def sha256_file(path: str | Path | BinaryIO, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks; `path` may be an open binary file (read from its start,
    left at its start)."""
    h = hashlib.sha256()
    if hasattr(path, "read"):
        path.seek(0)
        while block := path.read(chunk):
            h.update(block)
        path.seek(0)
        return h.hexdigest()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def digest_sidecar(path: str | Path) -> Path:
    """`<file>.sha256`: the hex sha256 of a cache file, written after the file itself."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def record_digest(path: str | Path) -> str:
    """Hash a complete file and write its sidecar (atomically); returns the digest."""
    digest = sha256_file(path)
    atomic_write_text(digest_sidecar(path), digest + "\n")
    return digest


def digest_problem(path: str | Path) -> str:
    """ "" when the file matches the digest in its sidecar, else what is wrong. A file without a sidecar is not
    trusted: deleting the sidecar must not silence the check (and a writer killed between the file and its sidecar
    leaves just that)."""
    sidecar = digest_sidecar(path)
    try:
        recorded = sidecar.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return f"has no recorded sha256 ({sidecar.name} is missing)"
    except (OSError, ValueError) as err:
        return f"has an unreadable {sidecar.name} ({err})"
    if sha256_file(path) != recorded:
        return "does not match its recorded sha256 (corrupted)"
    return ""


def subfolder_inside(folder: str | Path, rel, where: str) -> Path:
    """folder / rel for a folder a saved model names relative to itself (a finetuned backbone, an ST module), refusing
    one that is not a relative path or leaves `folder` — through "..", an absolute path or a link — with a ValueError
    naming `where` (the file that names it): a record pointing elsewhere would load whatever model lies there."""
    folder = Path(folder)
    if not isinstance(rel, str):
        raise ValueError(f"{where}: the path {rel!r} is not a string")
    pure = PurePosixPath(rel.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or PureWindowsPath(rel).drive:
        raise ValueError(f"{where}: the path {rel!r} leaves {folder}; a saved model names folders inside itself")
    target = folder.joinpath(*pure.parts)
    root = folder.resolve()
    real = target.resolve()
    if real != root and root not in real.parents:
        raise ValueError(f"{where}: the path {rel!r} leads out of {folder} (to {real}, through a link)")
    return target


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
