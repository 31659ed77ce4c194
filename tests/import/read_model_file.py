#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Reads a model file in Python with nothing of this project, as a user taking the weights back
# to PyTorch would, and checks the rules safetensors' own loader enforces (an 8-byte
# little-endian header length; a JSON object header; every tensor's dtype known and its
# data_offsets [begin, end) matching its shape; the tensors contiguous in offset order from 0
# to the end of the file; "__metadata__" a map of strings). Usage:
#   read_model_file.py MODEL OUT.json
# OUT.json: {"tensors": N, "sum": sum of every value (float64), "config_name": ...}.
import json
import struct
import sys

import torch

DTYPES = {"F32": (torch.float32, 4), "I64": (torch.int64, 8), "BF16": (torch.bfloat16, 2)}

path, out = sys.argv[1:3]
blob = open(path, "rb").read()
(n,) = struct.unpack("<Q", blob[:8])
assert 0 < n <= 100_000_000 and 8 + n <= len(blob), "header length"
header = json.loads(blob[8:8 + n].decode("utf-8"))
assert isinstance(header, dict)
meta = header.pop("__metadata__", {})
assert all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()), "metadata"
data = blob[8 + n:]
entries = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
at, total = 0, 0.0
for name, e in entries:
    dtype, size = DTYPES[e["dtype"]]
    begin, end = e["data_offsets"]
    count = 1
    for d in e["shape"]:
        count *= d
    assert begin == at and end - begin == count * size, name + ": offsets"
    t = torch.frombuffer(bytearray(data[begin:end]), dtype=dtype).reshape(e["shape"]) \
        if count else torch.zeros(e["shape"], dtype=dtype)
    total += float(t.double().sum())
    at = end
assert at == len(data), "the tensors must cover the data section exactly"
config = json.loads(meta["config"]) if "config" in meta else {}
json.dump({"tensors": len(entries), "sum": total, "config_name": config.get("name", "")},
          open(out, "w"))
