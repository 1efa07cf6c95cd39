#!/usr/bin/env bash
# make demo: the whole product on the embedded default, on the CPU — synthetic data and tiny
# random-weight backbones (affgd synth), the untrained baseline, a short training, evaluation of
# the trained model, and heatmaps for two test images.
set -euo pipefail
cd "$(dirname "$0")/.."
A=bin/affgd
W=demo/synth/weights
rm -rf demo
mkdir -p demo
start=$(date +%s)

echo "== affgd synth: synthetic AGD20K-style dataset and tiny backbones"
$A synth --out demo/synth

echo
echo "== affgd eval, untrained head (seed 0)"
$A eval --dataset agd20k-seen --data-root demo/synth/data --dino $W/dino_tiny.pth --clip $W/clip_tiny.pt | tee demo/eval_untrained.txt

echo
echo "== affgd train --config configs/demo.yaml"
$A train --config configs/demo.yaml

echo
echo "== affgd eval, trained (demo/run/last.pth)"
$A eval --dataset agd20k-seen --data-root demo/synth/data --checkpoint demo/run/last.pth \
  --per-class | tee demo/eval_trained.txt

echo
echo "== affgd predict on two test images"
imgs=$(find demo/synth/data/Seen/testset/egocentric/hold -name '*.jpg' | sort | head -2)
args=()
for i in $imgs; do args+=(--image "$i"); done
$A predict "${args[@]}" --action hold --checkpoint demo/run/last.pth --out demo/predictions

cam() { awk '$1 == "cam" { print $3; exit }' "$1"; }
echo
echo "cam KLD on the synthetic test split (lower is better): untrained $(cam demo/eval_untrained.txt) -> trained $(cam demo/eval_trained.txt)"
echo "demo finished in $(( $(date +%s) - start )) s (after the build)."
echo "  untrained vs trained tables: demo/eval_untrained.txt, demo/eval_trained.txt"
echo "  heatmap overlays (jet over the image) and raw maps: demo/predictions/"
echo "  training log and plot: demo/run/metrics.jsonl, demo/run/training.png; checkpoints demo/run/{last,best}.pth"
echo "  (with random CLIP weights the calibration map is noise, so ree and rem are not expected to improve; cam is.)"
