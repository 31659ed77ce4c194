#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Writes PyTorch checkpoints with torch.save (Debian's python3-torch) for the reader's tests,
# and beside each a JSON file with what the reader must find: every tensor's dtype, shape and
# values (flattened, row-major), and the meta values. Usage: make_checkpoints.py OUT_DIR
import collections
import json
import os
import sys

import torch

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.manual_seed(7)


def expect(path, state, meta):
    doc = {"tensors": {}, "meta": meta}
    for k, t in state.items():
        doc["tensors"][k] = {
            "dtype": str(t.dtype).replace("torch.", ""),
            "shape": list(t.shape),
            "values": t.float().flatten().tolist() if t.dtype != torch.bool
            else t.int().flatten().tolist(),
        }
    with open(path, "w") as f:
        json.dump(doc, f)


# 1. MMDetection's layout: {"state_dict": OrderedDict (with _metadata), "meta": {...}}, the
#    tensors of a conv + BN + GN module, and views that share storage.
m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.GroupNorm(2, 4))
m[1].running_mean.uniform_(-1, 1)
m[1].running_var.uniform_(0.5, 2)
state = m.state_dict()
base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
state["view.transposed"] = base.t()  # strides (1, 6)
state["view.slice"] = base[1:3, 2:5]  # offset 8, strides (6, 1)
state["scalar"] = torch.tensor(2.5)  # 0-d, like mmdet's scales.N.scale
state["half"] = torch.linspace(-2, 2, 5).half()
state["bf16"] = torch.linspace(-3, 3, 7).bfloat16()
state["long"] = torch.tensor([-(2 ** 40), 3, 2 ** 40], dtype=torch.int64)
state["flag"] = torch.tensor([True, False, True])
state["empty"] = torch.zeros(0, 3)
state["param"] = torch.nn.Parameter(torch.ones(2, 2) * 0.5)
meta = {"CLASSES": ["person", "car"], "epoch": 12, "lr": 0.01, "note": "caf\u00e9", "none": None,
        "ok": True, "big": 2 ** 40, "neg": -7}
torch.save({"state_dict": state, "meta": dict(meta, CLASSES=tuple(meta["CLASSES"]))},
           os.path.join(out, "mmdet.pth"))
expect(os.path.join(out, "mmdet.json"), state, meta)

# 2. cvpods / detectron2 layout: {"model": OrderedDict}, plus an optimizer-free "iteration".
small = collections.OrderedDict([("head.scales.0", torch.ones(1)), ("head.bias", torch.randn(3))])
torch.save({"model": small, "iteration": 90000}, os.path.join(out, "cvpods.pth"))
expect(os.path.join(out, "cvpods.json"), small, {})

# 3. torchvision layout: the state dict itself.
tv = torch.nn.Linear(3, 2).state_dict()
torch.save(tv, os.path.join(out, "torchvision.pth"))
expect(os.path.join(out, "torchvision.json"), tv, {})

# 4. The format before PyTorch 1.6 (a bare pickle followed by the storages).
torch.save(tv, os.path.join(out, "legacy.pth"), _use_new_zipfile_serialization=False)


# 5. Not data: an object of a class the reader must refuse by name.
class Hook:
    def __reduce__(self):
        return (os.getcwd, ())


torch.save({"state_dict": tv, "hook": Hook()}, os.path.join(out, "code.pth"))
