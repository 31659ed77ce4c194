#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Generates the demo clip: a slideshow of WIDER FACE val images (from ../shared/data, never
# copied into the repo) letterboxed to 640x360, 2 images per second, 30 fps H.264 MP4.
# Without the shared data it falls back to GStreamer's test pattern (no faces).
# Usage: make-clip.sh [OUT.mp4] [N_IMAGES]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../out/demo-clip.mp4}
n=${2:-30}
mkdir -p "$(dirname "$out")"
images=$here/../../shared/data/widerface/WIDER_val/images
if [ -d "$images" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  i=0
  for f in $(find "$images" -name '*.jpg' | sort | head -n "$n"); do
    ln -s "$f" "$tmp/$(printf 'img%03d.jpg' "$i")"
    i=$((i + 1))
  done
  gst-launch-1.0 -q multifilesrc location="$tmp/img%03d.jpg" index=0 stop-index=$((i - 1)) \
      caps=image/jpeg,framerate=2/1 ! jpegdec ! videoconvert ! \
      videoscale add-borders=true ! video/x-raw,width=640,height=360,pixel-aspect-ratio=1/1 ! \
      videorate ! video/x-raw,framerate=30/1 ! x264enc speed-preset=veryfast tune=zerolatency ! \
      mp4mux ! filesink location="$out"
else
  echo "make-clip: ../shared/data not found; using videotestsrc (no faces)" >&2
  gst-launch-1.0 -q videotestsrc num-buffers=300 pattern=ball ! \
      video/x-raw,width=640,height=360,framerate=30/1 ! x264enc speed-preset=veryfast ! \
      mp4mux ! filesink location="$out"
fi
echo "$out"
