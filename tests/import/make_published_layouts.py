#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Random checkpoints with exactly the key names and shapes of the published models, for the
# importer's tests (the real files are large downloads tests cannot depend on):
#   mmdet.pth        MMDetection 2.12 AutoAssign R-50 caffe FPN (379 keys; {"state_dict", "meta"})
#   cvpods.pth       the authors' cvpods AutoAssign R-50 FPN (326 keys; {"model", "iteration"})
#   torchvision.pth  torchvision ResNet-50 (320 keys; the bare state dict)
#   p6_from_p5.pth   mmdet layout with an 'on_output' P6 (256 -> 256), which must be refused
#   no_centerness.pth  mmdet layout without bbox_head.conv_centerness.weight: the error must
#                    name that key (the user's file's own words)
# Names follow mmdet/models/{backbones/resnet.py, necks/fpn.py, dense_heads/autoassign_head.py},
# cvpods/modeling/{backbone/resnet.py, backbone/fpn.py, meta_arch/auto_assign.py} and
# torchvision/models/resnet.py. Beside each, NAME.json: spot checks (library name -> the sum and
# first element of the tensor it must hold) written from those layouts by hand, and the sum of
# every tensor the model must receive.
import collections
import json
import os
import sys

import torch

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.manual_seed(11)
DEPTHS, WIDTHS = [3, 4, 6, 3], [64, 128, 256, 512]


def resnet(prefix, conv, bn, with_counter=True):
    """ResNet-50 keys: conv(name, shape) and bn(name, channels) callbacks give the naming."""
    sd = collections.OrderedDict()
    conv(sd, prefix, "stem", [64, 3, 7, 7])
    bn(sd, prefix, "stem", 64)
    cin = 64
    for s, (depth, w) in enumerate(zip(DEPTHS, WIDTHS)):
        for b in range(depth):
            unit = (s, b)
            conv(sd, prefix, unit + (1,), [w, cin if b == 0 else 4 * w, 1, 1])
            bn(sd, prefix, unit + (1,), w)
            conv(sd, prefix, unit + (2,), [w, w, 3, 3])
            bn(sd, prefix, unit + (2,), w)
            conv(sd, prefix, unit + (3,), [4 * w, w, 1, 1])
            bn(sd, prefix, unit + (3,), 4 * w)
            if b == 0:
                conv(sd, prefix, unit + ("down",), [4 * w, cin, 1, 1])
                bn(sd, prefix, unit + ("down",), 4 * w)
        cin = 4 * w
    return sd


def tv_name(unit, kind):
    """torchvision / mmdet ResNet module names."""
    if unit == "stem":
        return "conv1" if kind == "conv" else "bn1"
    s, b, k = unit
    if k == "down":
        return "layer%d.%d.downsample.%d" % (s + 1, b, 0 if kind == "conv" else 1)
    return "layer%d.%d.%s%d" % (s + 1, b, "conv" if kind == "conv" else "bn", k)


def conv_weight(shape):
    """Variance-preserving (1 / fan-in), so that activations through 16 blocks stay in range."""
    return torch.randn(shape) * (shape[1] * shape[2] * shape[3]) ** -0.5


def tv_conv(sd, prefix, unit, shape):
    sd[prefix + tv_name(unit, "conv") + ".weight"] = conv_weight(shape)


def bn_tensors(sd, n, c, last=False):
    """A BatchNorm's affine parameters and running statistics under the module name n; the
    last of a residual branch small, as trained ResNets have it, so the sum stays in range."""
    sd[n + ".weight"] = torch.rand(c) * 0.2 + 0.1 if last else torch.rand(c) + 0.5
    sd[n + ".bias"] = torch.randn(c) * 0.1
    sd[n + ".running_mean"] = torch.randn(c) * 0.1
    sd[n + ".running_var"] = torch.rand(c) + 0.5


def tv_bn(sd, prefix, unit, c):
    n = prefix + tv_name(unit, "bn")
    bn_tensors(sd, n, c, last=unit != "stem" and unit[2] == 3)
    sd[n + ".num_batches_tracked"] = torch.tensor(0, dtype=torch.int64)


def head(sd, names, scale_shape):
    for tower in ("cls", "reg"):
        for i in range(4):
            sd[names[tower](i, "conv.weight")] = conv_weight([256, 256, 3, 3]) * 2 ** 0.5
            sd[names[tower](i, "conv.bias")] = torch.randn(256) * 0.01
            sd[names[tower](i, "gn.weight")] = torch.rand(256) + 0.5
            sd[names[tower](i, "gn.bias")] = torch.randn(256) * 0.1
    # Predictor biases shaped like a trained model's, so that the parity test's forward pass
    # gives what a real one gives: few classes over the 0.05 threshold (prior around 0.02, as
    # the head's initialisation), positive distances of a few strides, objectness about 0.5.
    for pred, k, mean in (("cls", 80, -4.0), ("reg", 4, 2.0), ("obj", 1, 0.0)):
        sd[names["pred"][pred] + ".weight"] = torch.randn(k, 256, 3, 3) * 0.03
        sd[names["pred"][pred] + ".bias"] = torch.randn(k) * 0.5 + mean
    for i in range(5):
        sd[names["scale"](i)] = torch.full(scale_shape, 1.0 + 0.1 * i)


def fpn(sd, lateral, output, p6, p7, p6_in=2048):
    for i, cin in enumerate((512, 1024, 2048)):
        sd[lateral(i) + ".weight"] = torch.randn(256, cin, 1, 1) * 0.01
        sd[lateral(i) + ".bias"] = torch.randn(256) * 0.01
    for i in range(3):
        sd[output(i) + ".weight"] = torch.randn(256, 256, 3, 3) * 0.01
        sd[output(i) + ".bias"] = torch.randn(256) * 0.01
    sd[p6 + ".weight"] = torch.randn(256, p6_in, 3, 3) * 0.01
    sd[p6 + ".bias"] = torch.randn(256) * 0.01
    sd[p7 + ".weight"] = torch.randn(256, 256, 3, 3) * 0.01
    sd[p7 + ".bias"] = torch.randn(256) * 0.01


def check(sd, library, source):
    t = sd[source]
    return {"library": library, "source": source, "sum": float(t.double().sum()),
            "first": float(t.flatten()[0])}


def total(sd, skip=lambda k: False):
    return float(sum(t.double().sum() for k, t in sd.items()
                     if not k.endswith("num_batches_tracked") and not skip(k)))


# MMDetection.
def mmdet(p6_in=2048):
    sd = resnet("backbone.", tv_conv, tv_bn)
    fpn(sd, lambda i: "neck.lateral_convs.%d.conv" % i, lambda i: "neck.fpn_convs.%d.conv" % i,
        "neck.fpn_convs.3.conv", "neck.fpn_convs.4.conv", p6_in)
    head(sd, {"cls": lambda i, p: "bbox_head.cls_convs.%d.%s" % (i, p),
              "reg": lambda i, p: "bbox_head.reg_convs.%d.%s" % (i, p),
              "pred": {"cls": "bbox_head.conv_cls", "reg": "bbox_head.conv_reg",
                       "obj": "bbox_head.conv_centerness"},
              "scale": lambda i: "bbox_head.scales.%d.scale" % i}, [])
    sd["bbox_head.center_prior.mean"] = torch.randn(80, 2) * 0.1
    sd["bbox_head.center_prior.sigma"] = torch.rand(80, 2) + 0.5
    return sd


sd = mmdet()
assert len(sd) == 379, len(sd)
torch.save({"meta": {"CLASSES": tuple("c%d" % i for i in range(80)), "epoch": 12},
            "state_dict": sd}, os.path.join(out, "mmdet.pth"))
json.dump({"total": total(sd), "checks": [
    check(sd, "backbone.stem.0.weight", "backbone.conv1.weight"),
    check(sd, "backbone.stem.0.norm.running_var", "backbone.bn1.running_var"),
    check(sd, "backbone.res3.0.shortcut.norm.running_mean", "backbone.layer2.0.downsample.1.running_mean"),
    check(sd, "backbone.res5.2.conv3.norm.weight", "backbone.layer4.2.bn3.weight"),
    check(sd, "backbone.res4.5.conv2.weight", "backbone.layer3.5.conv2.weight"),
    check(sd, "fpn.lateral4.bias", "neck.lateral_convs.1.conv.bias"),
    check(sd, "fpn.output5.weight", "neck.fpn_convs.2.conv.weight"),
    check(sd, "fpn.p6.weight", "neck.fpn_convs.3.conv.weight"),
    check(sd, "fpn.p7.bias", "neck.fpn_convs.4.conv.bias"),
    check(sd, "head.cls_tower.2.norm.bias", "bbox_head.cls_convs.2.gn.bias"),
    check(sd, "head.reg_tower.3.weight", "bbox_head.reg_convs.3.conv.weight"),
    check(sd, "head.obj_pred.weight", "bbox_head.conv_centerness.weight"),
    check(sd, "head.cls_pred.bias", "bbox_head.conv_cls.bias"),
    check(sd, "center_prior.mu", "bbox_head.center_prior.mean")]},
    open(os.path.join(out, "mmdet.json"), "w"))
torch.save({"state_dict": mmdet(p6_in=256)}, os.path.join(out, "p6_from_p5.pth"))
# A copy of the first file's tensors, not a new draw: the random stream the files after this
# one take (and the reference detections the parity tests expect from them) stays as it was.
no_centerness = collections.OrderedDict(sd)
del no_centerness["bbox_head.conv_centerness.weight"]
torch.save({"state_dict": no_centerness}, os.path.join(out, "no_centerness.pth"))


# cvpods: FrozenBN (no counter), .norm children, shortcut registered before conv1.
def cv_name(unit):
    if unit == "stem":
        return "backbone.bottom_up.stem.conv1"
    s, b, k = unit
    return "backbone.bottom_up.res%d.%d.%s" % (s + 2, b, "shortcut" if k == "down" else "conv%d" % k)


def cv_conv(sd, prefix, unit, shape):
    sd[cv_name(unit) + ".weight"] = conv_weight(shape)


def cv_bn(sd, prefix, unit, c):
    bn_tensors(sd, cv_name(unit) + ".norm", c, last=unit != "stem" and unit[2] == 3)


cv = resnet("", cv_conv, cv_bn)
fpn(cv, lambda i: "backbone.fpn_lateral%d" % (i + 3), lambda i: "backbone.fpn_output%d" % (i + 3),
    "backbone.top_block.p6", "backbone.top_block.p7")
cv_head = collections.OrderedDict()
head(cv_head, {"cls": lambda i, p: "head.cls_subnet.%d.%s" % (3 * i + (0 if p.startswith("conv") else 1), p.split(".")[1]),
               "reg": lambda i, p: "head.bbox_subnet.%d.%s" % (3 * i + (0 if p.startswith("conv") else 1), p.split(".")[1]),
               "pred": {"cls": "head.cls_score", "reg": "head.bbox_pred", "obj": "head.obj_score"},
               "scale": lambda i: "head.scales.%d.scale" % i}, [1])
cv.update(cv_head)
cv["mu"] = torch.randn(80, 2) * 0.1
cv["sigma"] = torch.rand(80, 2) + 0.5
assert len(cv) == 326, len(cv)
torch.save({"model": cv, "iteration": 90000}, os.path.join(out, "cvpods.pth"))
json.dump({"total": total(cv), "checks": [
    check(cv, "backbone.stem.0.norm.bias", "backbone.bottom_up.stem.conv1.norm.bias"),
    check(cv, "backbone.res2.0.shortcut.weight", "backbone.bottom_up.res2.0.shortcut.weight"),
    check(cv, "fpn.p6.weight", "backbone.top_block.p6.weight"),
    check(cv, "fpn.lateral3.weight", "backbone.fpn_lateral3.weight"),
    check(cv, "head.cls_tower.1.weight", "head.cls_subnet.3.weight"),
    check(cv, "head.reg_tower.3.norm.weight", "head.bbox_subnet.10.weight"),
    check(cv, "head.reg_pred.weight", "head.bbox_pred.weight"),
    check(cv, "center_prior.sigma", "sigma")]},
    open(os.path.join(out, "cvpods.json"), "w"))

# torchvision ResNet-50: the backbone only, plus the classifier the importer drops.
tv = resnet("", tv_conv, tv_bn)
tv["fc.weight"] = torch.randn(1000, 2048) * 0.01
tv["fc.bias"] = torch.randn(1000) * 0.01
assert len(tv) == 320, len(tv)
torch.save(tv, os.path.join(out, "torchvision.pth"))
json.dump({"total": total(tv, lambda k: k.startswith("fc.")), "checks": [
    check(tv, "backbone.stem.0.weight", "conv1.weight"),
    check(tv, "backbone.res5.0.shortcut.norm.running_var", "layer4.0.downsample.1.running_var")]},
    open(os.path.join(out, "torchvision.json"), "w"))
