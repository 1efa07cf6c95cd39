#!/usr/bin/env bash
# Measures the HTML report on a large test set (`make bench-report`): writes a synthetic
# AGD20K-layout set of 8 actions × 6 objects × 35 test images = 1,680 (AGD20K-Seen has 1,675),
# 480 px, evaluates the untrained model on it without and with --report (the difference is the
# cost of drawing), prints the report's size, and opens it in headless Chromium
# (report/gallery BenchmarkOpenReport: load time, map switch, table sort).
# Usage: scripts/bench-report.sh [DIR]   (default out/bench-report; reuses DIR/syn when present)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out/bench-report}
B=bin/affgd
mkdir -p "$OUT"
if [ ! -f "$OUT/syn/weights/dino_tiny.pth" ]; then
  "$B" synth --out "$OUT/syn" --actions hold,cut_with,drink_with,type_on,beat,boxing,brush_with,carry \
    --objects 6 --exo 1 --ego 1 --test 35 --size 480
fi
W=(--dino "$OUT/syn/weights/dino_tiny.pth" --clip "$OUT/syn/weights/clip_tiny.pt"
   --vocab "$OUT/syn/weights/bpe_simple_vocab_16e6.txt.gz" --threads "${THREADS:-2}" --workers "${THREADS:-2}")
TIMEFORMAT='%R s wall'
ev() { time "$B" eval --dataset agd20k-seen --data-root "$OUT/syn/data" "${W[@]}" --json "$@" >/dev/null; }
echo "== eval without --report"; ev
echo "== eval --report"; ev --report "$OUT/report"
echo "== report size"
echo "index.html: $(stat -c %s "$OUT/report/index.html") bytes"
echo "img/: $(ls "$OUT/report/img" | wc -l) files, $(du -sb "$OUT/report/img" | cut -f1) bytes"
echo "grid strips: $(cat "$OUT"/report/img/?????.jpg | wc -c) bytes; enlarged strips: $(cat "$OUT"/report/img/*_l.jpg | wc -c) bytes"
echo "== open in Chromium"
AFFGD_REPORT_DIR="$OUT/report" go test -run '^$' -bench BenchmarkOpenReport -benchtime 3x ./report/gallery/
