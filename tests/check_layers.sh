#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The plugin holds the inference layers of the library only (model/meson.build): no dataset
# reader, evaluator, trainer or importer is linked into it, and it does not need libmatio.
# Usage: check_layers.sh PLUGIN.so
set -euo pipefail
plugin=${1:?usage: check_layers.sh PLUGIN.so}
status=0
needed=$(readelf -d "$plugin" | grep NEEDED || true)
if grep -qi matio <<< "$needed"; then
  echo "FAIL: $plugin needs libmatio (the data layer)"
  status=1
fi
# Symbols that only the data and train layers define (nm's output held in a variable and
# searched with here-strings: grep -q closing a pipe early would fail it under pipefail).
symbols=$(nm -C --defined-only "$plugin")
found=$(grep -E "autoassign::(load_widerface|load_coco|load_voc|evaluate_|WiderFaceEvaluator|CocoEvaluator|train\(|AutoAssignLoss|import_checkpoint|init_from_model)" <<< "$symbols" || true)
if [ -n "$found" ]; then
  echo "FAIL: $plugin defines data/train symbols:"
  echo "$found" | head
  status=1
fi
# And it does hold the inference layer (the check above would pass on an empty file).
if ! grep -q "autoassign::Detector::detect" <<< "$symbols"; then
  echo "FAIL: $plugin does not define autoassign::Detector::detect"
  status=1
fi
[ $status -eq 0 ] && echo "ok: $plugin links the inference layers only"
exit $status
