#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# File in -> detect -> overlay -> H.264 file out, plus JSON lines: the README's main job.
#   file-to-file.sh [IN.mp4] [OUT.mp4] [OUT.jsonl] [MODEL]
# Defaults: the generated demo clip, out/annotated.mp4, out/detections.jsonl and the shipped
# face model. Prints a summary (frames, detections, frames/s) at the end.
set -euo pipefail
# LibTorch runs on GStreamer's streaming threads: with libgomp's default spin-waiting, idle
# OpenMP teams of other threads steal the cores (measured: the element then runs ~20% slower
# than the bare library; with PASSIVE they are equal).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
here=$(cd "$(dirname "$0")" && pwd)
root=$here/..
in=${1:-$root/out/demo-clip.mp4}
out=${2:-$root/out/annotated.mp4}
json=${3:-$root/out/detections.jsonl}
model=${4:-$root/model/zoo/face-rt.pt}
export GST_PLUGIN_PATH=$root/build/gst${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}
[ -f "$in" ] || "$here/make-clip.sh" "$in" > /dev/null
mkdir -p "$(dirname "$out")" "$(dirname "$json")"
start=$(date +%s.%N)
gst-launch-1.0 -q filesrc location="$in" ! decodebin ! videoconvert ! video/x-raw,format=NV12 ! \
    autoassigndetect model-file="$model" threshold=0.5 ! autoassignoverlay ! \
    autoassignjson location="$json" ! videoconvert ! x264enc speed-preset=veryfast ! mp4mux ! \
    filesink location="$out"
end=$(date +%s.%N)
python3 - "$json" "$start" "$end" "$out" <<'PY'
import json, sys
frames = detections = 0
for line in open(sys.argv[1]):
    frames += 1
    detections += len(json.loads(line)["objects"])
secs = float(sys.argv[3]) - float(sys.argv[2])
print("frames %d, detections %d, %.1f frames/s (decode + detect + draw + encode, %.1f s)"
      % (frames, detections, frames / secs if secs > 0 else 0, secs))
print("annotated video: %s\ndetections (JSON lines): %s" % (sys.argv[4], sys.argv[1]))
PY
