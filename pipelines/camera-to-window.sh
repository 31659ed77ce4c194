#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A V4L2 camera -> detect -> overlay -> a window: live face detection on a webcam.
#   camera-to-window.sh [DEVICE|test] [SINK] [MODEL]
# DEVICE defaults to /dev/video0; `test` uses a test pattern instead of a camera (what the tests
# run). SINK defaults to autovideosink; e.g. `fakesink` for a headless run, or
# `"x264enc ! mp4mux ! filesink location=out.mp4"`. drop-when-busy keeps the window live: frames
# never queue behind inference, the boxes are the latest finished ones. NUM_BUFFERS=N stops after
# N frames.
set -euo pipefail
# LibTorch runs on GStreamer's streaming threads: with libgomp's default spin-waiting, idle
# OpenMP teams of other threads steal the cores (measured: the element then runs ~20% slower
# than the bare library; with PASSIVE they are equal).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
here=$(cd "$(dirname "$0")" && pwd)
root=$here/..
device=${1:-/dev/video0}
sink=${2:-autovideosink}
model=${3:-$root/model/zoo/face-rt.pt}
export GST_PLUGIN_PATH=$root/build/gst${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}
limit=()
[ -n "${NUM_BUFFERS:-}" ] && limit=(num-buffers="$NUM_BUFFERS")
if [ "$device" = test ]; then
  src=(videotestsrc is-live=true pattern=ball "${limit[@]}")
else
  [ -e "$device" ] || { echo "no camera at $device (try: $0 test)" >&2; exit 1; }
  src=(v4l2src device="$device" "${limit[@]}")
fi
# shellcheck disable=SC2086  # SINK may be a chain of elements
exec gst-launch-1.0 -e "${src[@]}" ! videoconvert ! video/x-raw,format=NV12 ! \
    autoassigndetect model-file="$model" threshold=0.5 drop-when-busy=true ! autoassignoverlay ! \
    videoconvert ! $sink
