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
  --save-predictions "$tmp/pred" --json --threads 2 --precision fp32 > "$tmp/ours.json"
# bf16 inference (where the CPU can: AVX-512) must keep the AP within 0.005 of fp32's and the
# detections on one event's real photos box for box.
bf16=no
if grep -qw avx512bw /proc/cpuinfo; then
  bf16=yes
  "$cli" eval --model "$model" --widerface "$shared/data/widerface" --max-images "$n" \
    --json --threads 2 --precision bf16 > "$tmp/bf16.json"
  for p in fp32 bf16; do
    "$cli" detect --model "$model" --input "$shared/data/widerface/WIDER_val/images/4--Dancing" \
      --precision $p --threshold 0.3 --threads 2 -o "$tmp/dance-$p.jsonl" 2> /dev/null
  done
fi
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
  "$floor_easy" "$floor_medium" "$floor_hard" "$bf16" "$tmp" <<'PY'
import json, sys
ok = True
if sys.argv[8] == "yes":
    fp32, bf16 = json.load(open(sys.argv[1])), json.load(open(sys.argv[9] + "/bf16.json"))
    for s in ("easy", "medium", "hard"):
        a, b = fp32[s]["ap"], bf16[s]["ap"]
        print("%-6s fp32 %.4f  bf16 %.4f  %s" % (s, a, b, "within 0.005" if abs(a - b) <= 0.005 else "DIFFER"))
        ok &= abs(a - b) <= 0.005
    def rows(p):
        return {r["image"]: r["objects"] for r in map(json.loads, open(sys.argv[9] + "/dance-%s.jsonl" % p))}
    def iou(a, b):
        iw = max(0.0, min(a["x2"], b["x2"]) - max(a["x1"], b["x1"]))
        ih = max(0.0, min(a["y2"], b["y2"]) - max(a["y1"], b["y1"]))
        i = iw * ih
        return i / ((a["x2"] - a["x1"]) * (a["y2"] - a["y1"]) + (b["x2"] - b["x1"]) * (b["y2"] - b["y1"]) - i)
    r32, r16 = rows("fp32"), rows("bf16")
    # Every fp32 detection (score >= 0.3) has a bf16 twin: IoU >= 0.9 and a
    # score within 0.05. Boxes near the threshold may cross it: those are counted, not failed.
    matched = total = 0
    for image, objs in r32.items():
        for a in objs:
            total += 1
            twin = [b for b in r16.get(image, []) if iou(a, b) >= 0.9 and abs(a["score"] - b["score"]) <= 0.05]
            matched += bool(twin)
    print("bf16 detections on 4--Dancing: %d of %d fp32 boxes have a bf16 twin" % (matched, total))
    ok &= total > 0 and matched >= 0.95 * total
else:
    print("bf16: skipped (no AVX-512 on this CPU; precision auto stays fp32)")
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
