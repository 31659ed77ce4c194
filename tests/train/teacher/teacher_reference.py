#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The reference the C++ FaceTeacher is tested against, from ../shared/tools/face_peers.py.

  teacher_reference.py TOOLS_DIR ONNX IMAGE detect OUT     face_peers.py's YuNet / SCRFD pass:
      one line per face "x y w h score" (the image's pixels), as its detect() returns them
  teacher_reference.py TOOLS_DIR ONNX IMAGE maps OUT       the image (any size up to 640x640) at
      the top-left of a zero 640x640 canvas, the network run with the same normalisation as
      face_peers.py, and per stride 8/16/32 the best anchor's score over the image's locations:
      "stride rows cols" then rows lines of cols values
The teacher's kind is told from the file name (yunet* or scrfd*)."""
import sys

tools, onnx, image, mode, out = sys.argv[1:6]
sys.path.insert(0, tools)
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import face_peers  # noqa: E402

cv2.setNumThreads(1)
name = onnx.rsplit("/", 1)[-1]
yunet = "yunet" in name
img = cv2.imread(image, cv2.IMREAD_COLOR)
with open(out, "w") as f:
    if mode == "detect":
        variant = "2.5g" if "2.5g" in name else "500m"
        peer = face_peers.YuNet(onnx, "n") if yunet else face_peers.SCRFD(onnx, variant)
        for row in peer.detect(img):
            f.write(" ".join("%.9g" % v for v in row) + "\n")
        sys.exit(0)
    h, w = img.shape[:2]
    canvas = np.zeros((640, 640, 3), np.uint8)
    canvas[:h, :w] = img
    net = cv2.dnn.readNetFromONNX(onnx)
    if yunet:
        net.setInput(canvas.transpose(2, 0, 1)[None].astype(np.float32))
        outs = net.forward(["cls_8", "cls_16", "cls_32", "obj_8", "obj_16", "obj_32"])
        maps = [(outs[i] * outs[i + 3]).reshape(640 // s, 640 // s) for i, s in enumerate((8, 16, 32))]
    else:
        blob = cv2.dnn.blobFromImage(canvas, 1.0 / 128, (640, 640), (127.5, 127.5, 127.5), swapRB=True)
        net.setInput(blob)
        by = {}
        for o in net.forward(net.getUnconnectedOutLayersNames()):
            o = o.reshape(-1, o.shape[-1])
            by[o.shape] = o
        maps = [by[(2 * (640 // s) ** 2, 1)].reshape(640 // s, 640 // s, 2).max(-1) for s in (8, 16, 32)]
    for s, m in zip((8, 16, 32), maps):
        rows, cols = -(-h // s), -(-w // s)
        f.write("%d %d %d\n" % (s, rows, cols))
        for r in range(rows):
            f.write(" ".join("%.9g" % v for v in m[r, :cols]) + "\n")
