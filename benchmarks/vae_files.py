"""Reading vae_cuda's files from Python: safetensors (checkpoints and the parity dumps) and MNIST-format
IDX files, raw or gzip-compressed. Shared by the PyTorch peers here and the parity tests."""
import gzip
import json
import os
import struct

import numpy as np
import torch

DTYPES = {"F32": "<f4", "F64": "<f8", "U8": "u1", "I64": "<i8"}


def read_safetensors(path):
    """name -> tensor: 8-byte little-endian header length, a JSON header, then raw little-endian data."""
    with open(path, "rb") as f:
        data = f.read()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    body = memoryview(data)[8 + length:]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        array = np.frombuffer(body[begin:end], dtype=DTYPES[entry["dtype"]]).reshape(entry["shape"])
        tensors[name] = torch.from_numpy(array.astype(array.dtype.newbyteorder("=")))
    return tensors


def read_idx(path):
    """A uint8 IDX file as a numpy array of its dimensions."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    rank = data[3]
    dims = struct.unpack(">" + "I" * rank, data[4:4 + 4 * rank])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def data_file(data_dir, name):
    """DIR/name, or DIR/name.gz, as vae_cuda looks for them (raw first)."""
    for candidate in (name, name + ".gz"):
        if os.path.exists(os.path.join(data_dir, candidate)):
            return os.path.join(data_dir, candidate)
    raise SystemExit(f"{data_dir}: no {name} (raw or .gz)")
