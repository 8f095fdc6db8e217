"""csrv2.files: a folder save replaces only a previous output of its kind, swaps one writer at a time, and leaves the
old or the new folder whatever moment it is killed at; files get the mode the umask allows."""

from __future__ import annotations

import json
import os
import shutil
import stat
import time

import numpy as np
import pytest
import torch

from csrv2 import SparseHead, files
from csrv2.export import to_sentence_transformers
from csrv2.head.codes import SparseCodes
from csrv2.index.sparse_index import SparseIndex
from csrv2.runs.checkpoint import save_checkpoint

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="kills and races forked writers (POSIX)")


def small_index(seed: int, n: int) -> SparseIndex:
    rng = np.random.default_rng(seed)
    idx = np.argsort(rng.random((n, 16)), axis=1)[:, :3]
    return SparseIndex.build(SparseCodes(torch.from_numpy(idx), torch.from_numpy(rng.random((n, 3), np.float32)), 16))


def same(a: SparseIndex, b: SparseIndex) -> bool:
    return a.n_docs == b.n_docs and all(
        np.array_equal(getattr(a, name), getattr(b, name)) for name in ("offsets", "doc_ids", "values")
    )


def leftovers(parent) -> list[str]:
    """Hidden entries a save leaves beside its folder (temporary folders, moved-aside copies, lock files)."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_a_save_refuses_any_folder_but_a_previous_output_of_its_kind(tmp_path, monkeypatch):
    """The user's own folder, a run folder, the current directory, a file, a link and an output of another kind
    are each refused with one line naming the folder, and left as they were. They used to be deleted."""
    index = small_index(0, 20)
    own = tmp_path / "notes"
    own.mkdir()
    (own / "thesis.tex").write_text("years of work")
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.csv").write_text("a,b\n")
    run = tmp_path / "run"
    head = SparseHead(4, 8, 2)
    save_checkpoint(run, 2, head, torch.optim.SGD(head.parameters(), lr=0.1), keep=2)
    (run / "metrics.jsonl").write_text("{}\n")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    link = tmp_path / "link"
    link.symlink_to(own)
    monkeypatch.chdir(own)
    before = {p: sorted(q.name for q in p.rglob("*")) for p in (own, other, run)}
    for target, why in (
        (own, "current directory"),
        (".", "current directory"),
        (tmp_path, "current directory"),
        (other, "not a SparseIndex written by csrv2"),
        (run, "not a SparseIndex written by csrv2"),
        (run / "step_000002", "holds a csrv2 checkpoint"),
        (a_file, "is a file"),
        (link, "symbolic link"),
    ):
        with pytest.raises(files.RefusedFolder, match=why) as err:
            index.save(target)
        assert "\n" not in str(err.value) and str(os.path.abspath(target)) in str(err.value)
    monkeypatch.chdir(tmp_path)
    assert {p: sorted(q.name for q in p.rglob("*")) for p in (own, other, run)} == before
    assert a_file.read_text() == "x" and leftovers(tmp_path) == []
    with pytest.raises(files.RefusedFolder, match="not a sentence-transformers export"):
        to_sentence_transformers(tmp_path / "any-run", other)  # refused before the run is even opened


def test_the_current_directory_is_refused_even_when_it_is_an_index(tmp_path, monkeypatch):
    small_index(0, 20).save(tmp_path / "ix")
    monkeypatch.chdir(tmp_path / "ix")
    with pytest.raises(files.RefusedFolder, match="current directory"):
        small_index(1, 30).save(".")
    assert len(SparseIndex.load(".")) == 20


def test_a_previous_output_of_its_kind_is_replaced_also_one_saved_before_markers(tmp_path):
    small_index(0, 20).save(tmp_path / "ix")
    assert json.loads((tmp_path / "ix" / files.MARKER).read_text()) == {"written_by": "csrv2", "kind": "SparseIndex"}
    small_index(1, 30).save(tmp_path / "ix")
    assert len(SparseIndex.load(tmp_path / "ix")) == 30
    (tmp_path / "ix" / files.MARKER).unlink()  # as saved by the version before markers: index.json is ours
    small_index(2, 40).save(tmp_path / "ix")
    assert len(SparseIndex.load(tmp_path / "ix")) == 40 and leftovers(tmp_path) == []


def run_killed(step: int, action) -> bool:
    """Run action() in a forked child that dies (os._exit, no cleanup) just before its `step`-th file-system call;
    True when the child got that far (it was killed), False when it finished first."""
    pid = os.fork()
    if pid == 0:  # the child: count the calls a save makes, die at the chosen one
        calls = [0]

        def dying(fn):
            def call(*args, **kwargs):
                calls[0] += 1
                if calls[0] == step:
                    os._exit(77)
                return fn(*args, **kwargs)

            return call

        import pathlib

        os.replace, os.open, os.unlink, os.mkdir = map(dying, (os.replace, os.open, os.unlink, os.mkdir))
        shutil.rmtree = dying(shutil.rmtree)
        np.save = dying(np.save)
        pathlib.Path.write_text = dying(pathlib.Path.write_text)
        try:
            action()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status), status
    return os.WEXITSTATUS(status) == 77


def test_a_save_killed_at_any_step_leaves_the_old_or_the_new_index(tmp_path):
    """Killed before each file-system call of a save in turn (array writes, marker, lock, both renames, the removal
    of the old folder), a save leaves a folder that loads — verified — as the old index or the new one; a load puts
    back an old folder moved aside, and the next save clears what the killed one left (its own temporary folder
    only once stale)."""
    old, new = small_index(0, 20), small_index(1, 30)
    step, outcomes = 0, []
    while True:
        step += 1
        root = tmp_path / f"kill{step}"
        root.mkdir()
        old.save(root / "ix")
        killed = run_killed(step, lambda root=root: new.save(root / "ix"))
        loaded = SparseIndex.load(root / "ix")
        assert same(loaded, old) or same(loaded, new), step
        outcomes.append("new" if same(loaded, new) else "old")
        for tmp in root.glob(".ix.*.tmp"):  # the killed writer's temporary folder: removed once stale
            os.utime(tmp, (time.time() - 2 * files.STALE_SECONDS,) * 2)
        small_index(2, 40).save(root / "ix")
        assert len(SparseIndex.load(root / "ix")) == 40 and leftovers(root) == [], (step, leftovers(root))
        if not killed:
            break
    assert step > 8 and outcomes[0] == "old" and outcomes[-1] == "new"  # every call of the save was a kill point
    assert outcomes == sorted(outcomes, key=lambda o: o == "new")  # old until the rename, new from then on


def test_concurrent_saves_leave_one_whole_index_and_readers_see_whole_ones(tmp_path):
    """Two processes saving different indexes to one path (each writer its own temporary folder, the swap under a
    lock) while this one loads it: every load is one writer's index whole, verified; so is the end. They used to
    share one temporary name and could leave a mix that passed verification."""
    indexes = [small_index(0, 20), small_index(1, 3000)]
    indexes[0].save(tmp_path / "ix")
    children = []
    for which in (0, 1):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for _ in range(15):
                    indexes[which].save(tmp_path / "ix")
                code = 0
            finally:
                os._exit(code)
        children.append(pid)
    seen = set()
    deadline = time.time() + 60
    while len(children) and time.time() < deadline:
        loaded = SparseIndex.load(tmp_path / "ix")
        matches = [i for i, index in enumerate(indexes) if same(loaded, index)]
        assert matches, "a load saw a mix of two saves"
        seen.add(matches[0])
        for pid in list(children):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
                children.remove(pid)
    assert not children and seen == {0, 1}
    final = SparseIndex.load(tmp_path / "ix")
    assert any(same(final, index) for index in indexes) and leftovers(tmp_path) == []


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_files_and_folders_get_the_mode_the_umask_allows(tmp_path, mask):
    """Temporary names are created 0600 / 0700; renamed into place they used to stay so, unreadable by the group
    whatever the umask said."""
    previous = os.umask(mask)
    try:
        files.atomic_write_text(tmp_path / "a.txt", "x")
        small_index(0, 10).save(tmp_path / "ix")
        read = files.umask()
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE((tmp_path / "ix").stat().st_mode) == 0o777 & ~mask
    for file in (tmp_path / "ix").iterdir():
        assert stat.S_IMODE(file.stat().st_mode) == 0o666 & ~mask, file.name
    assert read == mask
