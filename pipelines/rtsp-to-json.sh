#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# An RTSP camera -> detect -> JSON lines, reconnecting when the camera drops.
#   rtsp-to-json.sh URL [OUT_DIR] [MODEL] [extra autoassign-cameras options...]
# Writes OUT_DIR/camera-0.jsonl (default out/), one DL Streamer-style JSON object per frame.
# Reconnection is the program's, not rtspsrc's: rtspsrc retries only while connecting, so
# autoassign-cameras restarts the camera's pipeline on an error, an end of stream or a stall
# (no frame for --stall-seconds), backing off 1 s, 2 s, ... up to --retry-max-seconds, and
# appends to the same file. With --retries N it gives up after N failed attempts in a row and
# exits with status 1 and the last error. See autoassign-cameras --help.
set -euo pipefail
# LibTorch runs on GStreamer's streaming threads: with libgomp's default spin-waiting, idle
# OpenMP teams of other threads steal the cores (measured: the element then runs ~20% slower
# than the bare library; with PASSIVE they are equal).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
here=$(cd "$(dirname "$0")" && pwd)
root=$here/..
url=${1:?usage: rtsp-to-json.sh URL [OUT_DIR] [MODEL] [options...]}
out=${2:-$root/out}
model=${3:-$root/model/zoo/face-rt.pt}
shift $(( $# < 3 ? $# : 3 ))
exec "$root/build/pipelines/autoassign-cameras" --model "$model" --output "$out" "$@" "$url"
