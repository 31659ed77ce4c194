#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# A reference forward pass of the published AutoAssign R-50 FPN models, written from the
# semantics of their own code and independent of this library (no shared code, no shared key
# mapping: it reads each checkpoint by the names its source uses), for the importer's parity
# test. Usage:
#   reference_forward.py mmdet|cvpods CHECKPOINT IMAGE.bgr WIDTH HEIGHT OUT.json
#   reference_forward.py torchvision CHECKPOINT IMAGE.bgr WIDTH HEIGHT OUT_PREFIX
# IMAGE.bgr holds HEIGHT x WIDTH x 3 bytes, BGR; the image is taken at its size (no resize:
# the test gives a 1216 x 800 picture, which the 800/1333 policy keeps as it is, and which is a
# multiple of 32, so nothing is padded). OUT.json: the detections, best first, as
# {"boxes": [[x1, y1, x2, y2], ...], "scores": [...], "labels": [...]}. With torchvision, the
# backbone's C3, C4 and C5 of a torchvision ResNet-50 (models/resnet.py: the bottleneck's
# stride in its 3x3, BatchNorm in eval mode, input RGB / 255 normalised by ImageNet's mean and
# std), written to OUT_PREFIX.c3 .c4 .c5 (float32, C x H x W) and their shapes to
# OUT_PREFIX.json.
#
# Sources (their semantics, read in the code):
#  mmdet 2.12: backbones/resnet.py (style='caffe': the stride on the first 1x1; BN frozen, eps
#    1e-5), necks/fpn.py (start_level=1, add_extra_convs='on_input': P6 = conv(C5), P7 =
#    conv(relu(P6)); top-down by nearest interpolation to the lower level's size),
#    dense_heads/autoassign_head.py (towers conv-GN(32)-ReLU; objectness from the regression
#    tower; relu(scale * reg) * stride; points at (x * stride, y * stride), no half-stride
#    offset), fcos_head.py _get_bboxes and core/post_processing/bbox_nms.py multiclass_nms
#    (nms_pre 1000 locations by max of cls * centerness, distance2bbox clipped to the image,
#    rescale, keep cls > 0.05, times centerness, batched NMS 0.6, first 100).
#    Pixel mean 102.9801 / 115.9465 / 122.7717, std 1, BGR.
#  cvpods (the authors' AutoAssign): modeling/backbone/resnet.py (stride_in_1x1, FrozenBN),
#    backbone/fpn.py (LastLevelP6P7 on res5, top-down by 2x nearest), meta_arch/auto_assign.py
#    (the same head; inference: scores cls * obj over (location, class), top 1000 per level,
#    then > 0.05, shifts at (x * stride, y * stride), batched NMS 0.6, first 100, then rescale,
#    clip and drop empty boxes). Pixel mean 103.53 / 116.28 / 123.675, std 1, BGR.
import json
import sys

import torch
import torch.nn.functional as F

EPS = 1e-5
STRIDES = [8, 16, 32, 64, 128]
SCORE_THR, NMS_IOU, TOPK, MAX_DET = 0.05, 0.6, 1000, 100


def frozen_bn(x, w, b, mean, var):
    scale = w / torch.sqrt(var + EPS)
    return x * scale[None, :, None, None] + (b - mean * scale)[None, :, None, None]


class Names:
    """Where each source keeps a tensor."""

    def __init__(self, layout, sd):
        self.layout, self.sd = layout, sd

    def t(self, name):
        return self.sd[name].float()

    # ResNet units: ("stem",) or (stage 0..3, block, "conv1"|"conv2"|"conv3"|"down").
    def conv_bn(self, unit):
        if self.layout in ("mmdet", "torchvision"):
            prefix = "backbone." if self.layout == "mmdet" else ""
            if unit == ("stem",):
                conv, bn = prefix + "conv1", prefix + "bn1"
            else:
                s, b, k = unit
                base = prefix + "layer%d.%d." % (s + 1, b)
                if k == "down":
                    conv, bn = base + "downsample.0", base + "downsample.1"
                else:
                    conv, bn = base + k, base + "bn" + k[-1]
        else:
            if unit == ("stem",):
                conv = "backbone.bottom_up.stem.conv1"
            else:
                s, b, k = unit
                conv = "backbone.bottom_up.res%d.%d.%s" % (s + 2, b, "shortcut" if k == "down" else k)
            bn = conv + ".norm"
        return (self.t(conv + ".weight"), self.t(bn + ".weight"), self.t(bn + ".bias"),
                self.t(bn + ".running_mean"), self.t(bn + ".running_var"))

    def fpn(self, kind, i):
        """kind: lateral / output for C3..C5 (i = 0..2), p6, p7; returns (weight, bias)."""
        if self.layout == "mmdet":
            name = {"lateral": "neck.lateral_convs.%d.conv" % i,
                    "output": "neck.fpn_convs.%d.conv" % i,
                    "p6": "neck.fpn_convs.3.conv", "p7": "neck.fpn_convs.4.conv"}[kind]
        else:
            name = {"lateral": "backbone.fpn_lateral%d" % (i + 3),
                    "output": "backbone.fpn_output%d" % (i + 3),
                    "p6": "backbone.top_block.p6", "p7": "backbone.top_block.p7"}[kind]
        return self.t(name + ".weight"), self.t(name + ".bias")

    def tower(self, tower, i):
        """(conv weight, conv bias, gn weight, gn bias) of tower 'cls'/'reg' layer i."""
        if self.layout == "mmdet":
            base = "bbox_head.%s_convs.%d." % (tower, i)
            conv, gn = base + "conv", base + "gn"
        else:
            base = "head.%s_subnet." % ("cls" if tower == "cls" else "bbox")
            conv, gn = base + str(3 * i), base + str(3 * i + 1)
        return (self.t(conv + ".weight"), self.t(conv + ".bias"), self.t(gn + ".weight"),
                self.t(gn + ".bias"))

    def predictor(self, kind):
        names = {"mmdet": {"cls": "bbox_head.conv_cls", "reg": "bbox_head.conv_reg",
                           "obj": "bbox_head.conv_centerness"},
                 "cvpods": {"cls": "head.cls_score", "reg": "head.bbox_pred",
                            "obj": "head.obj_score"}}[self.layout][kind]
        return self.t(names + ".weight"), self.t(names + ".bias")

    def scale(self, level):
        prefix = "bbox_head" if self.layout == "mmdet" else "head"
        return self.t("%s.scales.%d.scale" % (prefix, level)).reshape(())


def backbone(n, x):
    w, *bn = n.conv_bn(("stem",))
    x = F.relu(frozen_bn(F.conv2d(x, w, stride=2, padding=3), *bn))
    x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
    outs = []
    for s, depth in enumerate([3, 4, 6, 3]):
        for b in range(depth):
            stride = 2 if (b == 0 and s > 0) else 1
            w1, *bn1 = n.conv_bn((s, b, "conv1"))
            w2, *bn2 = n.conv_bn((s, b, "conv2"))
            w3, *bn3 = n.conv_bn((s, b, "conv3"))
            # caffe style (mmdet, cvpods): stride in the 1x1; torchvision: in the 3x3
            s1, s3 = (1, stride) if n.layout == "torchvision" else (stride, 1)
            y = F.relu(frozen_bn(F.conv2d(x, w1, stride=s1), *bn1))
            y = F.relu(frozen_bn(F.conv2d(y, w2, stride=s3, padding=1), *bn2))
            y = frozen_bn(F.conv2d(y, w3), *bn3)
            if b == 0:
                wd, *bnd = n.conv_bn((s, b, "down"))
                x = frozen_bn(F.conv2d(x, wd, stride=stride), *bnd)
            x = F.relu(y + x)
        outs.append(x)
    return outs[1:]  # C3, C4, C5


def fpn(n, feats):
    laterals = [F.conv2d(c, *n.fpn("lateral", i)) for i, c in enumerate(feats)]
    for i in (2, 1):
        if n.layout == "mmdet":
            up = F.interpolate(laterals[i], size=laterals[i - 1].shape[2:], mode="nearest")
        else:
            up = F.interpolate(laterals[i], scale_factor=2, mode="nearest")
        laterals[i - 1] = laterals[i - 1] + up
    outs = [F.conv2d(lat, *n.fpn("output", i), padding=1) for i, lat in enumerate(laterals)]
    p6 = F.conv2d(feats[2], *n.fpn("p6", 0), stride=2, padding=1)  # on C5 (both sources)
    p7 = F.conv2d(F.relu(p6), *n.fpn("p7", 0), stride=2, padding=1)
    return outs + [p6, p7]


def head(n, level, x):
    feats = {}
    for tower in ("cls", "reg"):
        y = x
        for i in range(4):
            w, b, gw, gb = n.tower(tower, i)
            y = F.relu(F.group_norm(F.conv2d(y, w, b, padding=1), 32, gw, gb, eps=EPS))
        feats[tower] = y
    cls = F.conv2d(feats["cls"], *n.predictor("cls"), padding=1)
    reg = F.conv2d(feats["reg"], *n.predictor("reg"), padding=1)
    obj = F.conv2d(feats["reg"], *n.predictor("obj"), padding=1)  # on the regression tower
    dist = F.relu(reg * n.scale(level)) * STRIDES[level]
    return cls[0], dist[0], obj[0]  # [K,H,W], [4,H,W], [1,H,W]


def nms_first(boxes, scores, labels, iou, limit):
    """Greedy class-aware NMS (suppress IoU > iou), the first `limit` kept, best first."""
    order = torch.sort(scores, descending=True, stable=True).indices
    boxes, scores, labels = boxes[order], scores[order], labels[order]
    alive = torch.ones(len(scores), dtype=torch.bool)
    area = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    keep = []
    for i in range(len(scores)):
        if not alive[i]:
            continue
        keep.append(i)
        if len(keep) == limit:
            break
        w = (torch.min(boxes[i, 2], boxes[:, 2]) - torch.max(boxes[i, 0], boxes[:, 0])).clamp(min=0)
        h = (torch.min(boxes[i, 3], boxes[:, 3]) - torch.max(boxes[i, 1], boxes[:, 1])).clamp(min=0)
        inter = w * h
        over = inter / (area[i] + area - inter) > iou  # 0 / 0 is nan: not suppressed
        over &= labels == labels[i]
        over[: i + 1] = False
        alive &= ~over
    keep = torch.tensor(keep, dtype=torch.long)
    return boxes[keep], scores[keep], labels[keep]


def points_of(h, w, stride):
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([xs.reshape(-1) * stride, ys.reshape(-1) * stride], 1).float()


def post_mmdet(outputs, img_w, img_h):
    boxes, pis, omegas = [], [], []
    for level, (cls, dist, obj) in enumerate(outputs):
        k, h, w = cls.shape
        pi = cls.sigmoid().permute(1, 2, 0).reshape(-1, k)
        omega = obj.sigmoid().reshape(-1)
        d = dist.permute(1, 2, 0).reshape(-1, 4)
        pts = points_of(h, w, STRIDES[level])
        if pi.shape[0] > TOPK:
            top = (pi * omega[:, None]).max(1).values.topk(TOPK).indices
            pi, omega, d, pts = pi[top], omega[top], d[top], pts[top]
        b = torch.stack([pts[:, 0] - d[:, 0], pts[:, 1] - d[:, 1],
                         pts[:, 0] + d[:, 2], pts[:, 1] + d[:, 3]], 1)
        b[:, 0::2] = b[:, 0::2].clamp(0, img_w)
        b[:, 1::2] = b[:, 1::2].clamp(0, img_h)
        boxes.append(b), pis.append(pi), omegas.append(omega)
    boxes, pi, omega = torch.cat(boxes), torch.cat(pis), torch.cat(omegas)  # scale factor 1
    k = pi.shape[1]
    cand = (pi > SCORE_THR).nonzero()  # (location, class), pi alone
    scores = pi[cand[:, 0], cand[:, 1]] * omega[cand[:, 0]]
    return nms_first(boxes[cand[:, 0]], scores, cand[:, 1], NMS_IOU, MAX_DET)


def post_cvpods(outputs, img_w, img_h):
    boxes, scores, labels = [], [], []
    for level, (cls, dist, obj) in enumerate(outputs):
        k, h, w = cls.shape
        s = (cls.sigmoid() * obj.sigmoid()).permute(1, 2, 0).reshape(-1)
        prob, idx = s.sort(descending=True)
        n = min(TOPK, h * w)
        prob, idx = prob[:n], idx[:n]
        keep = prob > SCORE_THR
        prob, idx = prob[keep], idx[keep]
        loc, label = idx // k, idx % k
        d = dist.permute(1, 2, 0).reshape(-1, 4)[loc]
        pts = points_of(h, w, STRIDES[level])[loc]
        boxes.append(torch.cat([pts - d[:, :2], pts + d[:, 2:]], 1))
        scores.append(prob), labels.append(label)
    b, s, l = nms_first(torch.cat(boxes), torch.cat(scores), torch.cat(labels), NMS_IOU, MAX_DET)
    b[:, 0::2] = b[:, 0::2].clamp(0, img_w)  # rescale by 1, clip, drop empty boxes
    b[:, 1::2] = b[:, 1::2].clamp(0, img_h)
    nonempty = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    return b[nonempty], s[nonempty], l[nonempty]


def main():
    layout, ckpt, image, width, height, out = sys.argv[1:7]
    width, height = int(width), int(height)
    assert layout in ("mmdet", "cvpods", "torchvision"), layout
    assert width % 32 == 0 and height % 32 == 0, "the reference takes unpadded sizes only"
    data = torch.load(ckpt, map_location="cpu")
    sd = {"mmdet": lambda: data["state_dict"], "cvpods": lambda: data["model"],
          "torchvision": lambda: data}[layout]()
    n = Names(layout, sd)
    raw = torch.frombuffer(bytearray(open(image, "rb").read()), dtype=torch.uint8)
    bgr = raw.reshape(height, width, 3).permute(2, 0, 1).float()
    torch.set_num_threads(2)
    if layout == "torchvision":
        rgb = bgr.flip(0) / 255
        x = ((rgb - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) /
             torch.tensor([0.229, 0.224, 0.225])[:, None, None])[None]
        with torch.no_grad():
            feats = backbone(n, x)
        shapes = {}
        for name, f in zip(("c3", "c4", "c5"), feats):
            open(out + "." + name, "wb").write(f[0].contiguous().numpy().tobytes())
            shapes[name] = list(f[0].shape)
        json.dump(shapes, open(out + ".json", "w"))
        return
    mean = [102.9801, 115.9465, 122.7717] if layout == "mmdet" else [103.53, 116.28, 123.675]
    x = (bgr - torch.tensor(mean)[:, None, None])[None]  # std 1
    with torch.no_grad():
        levels = fpn(n, backbone(n, x))
        outputs = [head(n, i, p) for i, p in enumerate(levels)]
        post = post_mmdet if layout == "mmdet" else post_cvpods
        boxes, scores, labels = post(outputs, width, height)
    json.dump({"boxes": boxes.tolist(), "scores": scores.tolist(), "labels": labels.tolist()},
              open(out, "w"))


main()
