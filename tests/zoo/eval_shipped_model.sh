#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The shipped face model on the shared WIDER FACE val images (the dev-val, events 0, 4, 19):
# `autoassign eval` runs it at its own defaults and scores the predictions, the independent
# reference evaluator (../shared/tools/wider_eval.py) scores the same prediction files, and the
# two must agree; the model must also clear per-setting floors a little under the AP its report
# states, so a regression of the model, its file or the pre/post-processing fails.
# Usage: eval_shipped_model.sh AUTOASSIGN_CLI MODEL SHARED_DIR N_IMAGES(0 = all) EASY MEDIUM HARD
set -euo pipefail
cli=$1 model=$2 shared=$3 n=$4 floor_easy=$5 floor_medium=$6 floor_hard=$7
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$cli" eval --model "$model" --widerface "$shared/data/widerface" --max-images "$n" \
  --save-predictions "$tmp/pred" --json --threads 2 > "$tmp/ours.json"
/usr/bin/python3 "$shared/tools/wider_eval.py" --pred "$tmp/pred" \
  --gt "$shared/data/widerface/eval_tools/ground_truth" --json "$tmp/ref.json" > /dev/null
# `autoassign detect` over one event folder writes the official layout; `autoassign eval`
# of those files must equal the reference evaluator's.
"$cli" detect --model "$model" --input "$shared/data/widerface/WIDER_val/images/19--Couple" \
  --format widerface -o "$tmp/det" --threshold 0.02 --max-detections 1000 --threads 2 \
  2> /dev/null
"$cli" eval --predictions "$tmp/det" --widerface "$shared/data/widerface" --json > "$tmp/det_ours.json"
/usr/bin/python3 "$shared/tools/wider_eval.py" --pred "$tmp/det" \
  --gt "$shared/data/widerface/eval_tools/ground_truth" --json "$tmp/det_ref.json" > /dev/null
/usr/bin/python3 - "$tmp/ours.json" "$tmp/ref.json" "$tmp/det_ours.json" "$tmp/det_ref.json" \
  "$floor_easy" "$floor_medium" "$floor_hard" <<'PY'
import json, sys
ok = True
det_ours = json.load(open(sys.argv[3]))
det_ref = json.load(open(sys.argv[4]))["settings"]
for s in ("easy", "medium", "hard"):
    a, b = det_ours[s]["ap"], det_ref[s]["ap"]
    same = b is not None and abs(a - b) < 1e-9
    print("detect files, %-6s autoassign %.6f  reference %.6f  %s" % (s, a, b, "equal" if same else "DIFFER"))
    ok &= same
ours = json.load(open(sys.argv[1]))
ref = json.load(open(sys.argv[2]))["settings"]
for s in ("easy", "medium", "hard"):
    a, b = ours[s]["ap"], ref[s]["ap"]
    # Prediction files carry 2 decimals, the in-memory run full precision: allow rounding.
    agree = b is not None and abs(a - b) < 2e-3
    print("%-6s autoassign %.4f  reference %.4f  %s" % (s, a, b if b is not None else float("nan"),
                                                         "agree" if agree else "DIFFER"))
    ok &= agree
for s, floor in zip(("easy", "medium", "hard"), map(float, sys.argv[5:8])):
    print("%-6s AP %.4f (floor %.3f)" % (s, ours[s]["ap"], floor))
    ok &= ours[s]["ap"] >= floor
print("1 passed, 0 failed" if ok else "0 passed, 1 failed")
sys.exit(0 if ok else 1)
PY
