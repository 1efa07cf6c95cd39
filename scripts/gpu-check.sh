#!/usr/bin/env bash
# affgd end to end on a GPU machine, in one call, from the bundle `make gpu-bundle` builds.
#
# Here (a machine with Go):   make gpu-bundle   # gpu-bundle/gpu-bundle.tar.xz (≤ 60 MiB)
# There (PyTorch with CUDA, cmake, g++; no Go, no network), with the bundle carried along:
#   scripts/gpu-check.sh [--device cuda:0] [--quick] [--out DIR] [--budget SECONDS]
# Proof on a CPU machine: scripts/gpu-check.sh --device cpu --quick (make gpu-check ARGS=...).
#
# Steps (each logged under DIR/logs, timed, and listed with its command in DIR/gpu-report.json
# and DIR/gpu-report.md; DIR defaults to $OUT, else gpu-check-out/):
#   1. unpack the bundle; add the bundled pure-Python packages this Python cannot import;
#   2. start making, in the background, the reference data the bundle does not carry
#      (tests/*/gen_*.py with this machine's PyTorch, on its CPU);
#   3. rebuild only the shim against this machine's libtorch (find_package, else PLAIN);
#   4. `affgd synth` with full-size random backbones (DINO ViT-S/16, CLIP ViT-B/16; --quick: the
#      tiny ones), a 2-epoch `affgd train` at 224² (deterministic: true) on the device, the same
#      run cut after epoch 1 and finished with --resume (last.pth compared byte for byte),
#      `affgd eval` and `affgd predict` of its checkpoint;
#      then the loader's wait for data and the copy stream's overlap (a 12-step train with 1
#      worker and with every core; its "data:" log lines);
#   5. bad input: a device that does not exist (one line naming it and what exists) and, on
#      CUDA, a step too large for the GPU (one line naming the batch size, memory requested and
#      free);
#   6. `affgd bench step --against released` (B=8, E=3, 224², epoch 1) with and without
#      deterministic mode, and `affgd bench eval --against released`;
#   7. the test suites of every package that computes with AFFGD_TEST_DEVICE set to the device,
#      once their reference data is ready (suites whose data could not be made are reported as
#      not run, with the reason).
# Exit status 0 only when every step passed.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEV=cuda:0
QUICK=0
OUTDIR=${OUT:-gpu-check-out}
BUDGET=470 # seconds: the whole call must fit 8 minutes of device time
while [ $# -gt 0 ]; do
  case $1 in
  --device) DEV=$2; shift 2 ;;
  --quick) QUICK=1; shift ;;
  --out) OUTDIR=$2; shift 2 ;;
  --budget) BUDGET=$2; shift 2 ;;
  *) echo "gpu-check.sh: unknown argument $1 (want --device D, --quick, --out DIR, --budget S)" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUTDIR/logs"
OUTDIR=$(cd "$OUTDIR" && pwd)
LOGS=$OUTDIR/logs
STEPS=$OUTDIR/steps.jsonl
: >"$STEPS"
T0=$(date +%s)
PY=${PYTHON:-${AFFGD_PYTHON:-python3}}
B=$ROOT/gpu-bundle
WORK=$(mktemp -d "${TMPDIR:-/tmp}/affgd-gpu-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
rc=0

elapsed() { echo $(($(date +%s) - T0)); }
# step NAME CMD...: runs CMD with its output in logs/NAME.log, records it in steps.jsonl.
step() {
  local name=$1; shift
  local s e r
  s=$(date +%s.%N)
  "$@" >"$LOGS/$name.log" 2>&1
  r=$?
  e=$(date +%s.%N)
  record "$name" "$r" "$s" "$e" "$*"
  if [ "$r" -ne 0 ]; then rc=1; echo "== $name: FAILED (exit $r, $(elapsed)s)"; tail -15 "$LOGS/$name.log"; else echo "== $name: ok ($(elapsed)s)"; fi
  return "$r"
}
record() { # name rc start end command [note]
  "$PY" - "$@" >>"$STEPS" <<'EOF'
import json, sys
name, rc, s, e, cmd = sys.argv[1:6]
note = sys.argv[6] if len(sys.argv) > 6 else ""
print(json.dumps({"name": name, "rc": int(rc), "seconds": round(float(e) - float(s), 2), "command": cmd, "note": note}))
EOF
}
skip() { # name reason
  record "$1" -1 0 0 "" "$2"
  echo "== $1: not run ($2)"
}

# 1. The bundle.
if [ ! -x "$B/bin/affgd" ]; then
  [ -f "$B/gpu-bundle.tar.xz" ] || { echo "gpu-check.sh: no gpu-bundle/ (run \`make gpu-bundle\` on a machine with Go and carry gpu-bundle/gpu-bundle.tar.xz)"; exit 1; }
  tar -xJf "$B/gpu-bundle.tar.xz" -C "$ROOT" || { echo "gpu-check.sh: cannot unpack the bundle"; exit 1; }
fi
BIN=$B/bin
pypath=""
for d in "$B"/py/*/; do
  m=$(basename "$d")
  "$PY" -c "import $m" 2>/dev/null || pypath="$pypath:${d%/}"
done
ver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
if ! "$PY" -c 'import regex' 2>/dev/null && [ -d "$B/py-cp$ver/regex" ]; then pypath="$pypath:$B/py-cp$ver/regex"; fi
export PYTHONPATH=${pypath#:}${PYTHONPATH:+:$PYTHONPATH}
"$PY" - >"$OUTDIR/machine.json" <<EOF
import json, os, platform, torch
d = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
     "cpus": os.cpu_count(), "device": "$DEV", "quick": bool($QUICK), "pythonpath_added": os.environ.get("PYTHONPATH", "")}
if torch.cuda.is_available():
    d["gpu"] = torch.cuda.get_device_name(0)
    d["gpu_memory"] = torch.cuda.get_device_properties(0).total_memory
print(json.dumps(d))
EOF
cat "$OUTDIR/machine.json"

# 2. Reference data: the bundle's, ours where this is the machine that made it, the rest made here.
export AFFGD_TESTDATA=${AFFGD_TESTDATA:-$ROOT/tests/testdata}
mkdir -p "$AFFGD_TESTDATA"
for s in "$B"/testdata/*/; do [ -e "$AFFGD_TESTDATA/$(basename "$s")" ] || cp -a "$s" "$AFFGD_TESTDATA/"; done
gen_pids=()
gen_suites=""
# The suites the tests below need, generators first that others build on (dino, clip).
for suite in ops optim nn dino clip head losses discovery method checkpoint metrics eval; do
  [ -f "$AFFGD_TESTDATA/$suite/.stamp" ] && continue
  gen_suites="$gen_suites $suite"
done
if [ -n "$gen_suites" ]; then
  echo "== making the reference data:$gen_suites (in the background, in parallel, $PY)"
  for suite in $gen_suites; do
    (
      mkdir -p "$AFFGD_TESTDATA/$suite"
      s=$(date +%s.%N)
      # Two intra-op threads each: the generators run side by side with the shim build.
      if OMP_NUM_THREADS=2 "$PY" "tests/$suite/gen_$suite.py" --out "$AFFGD_TESTDATA/$suite" >"$LOGS/gen-$suite.log" 2>&1; then
        touch "$AFFGD_TESTDATA/$suite/.stamp"; r=0
      else r=$?; fi
      record "gen-$suite" "$r" "$s" "$(date +%s.%N)" "$PY tests/$suite/gen_$suite.py --out \$AFFGD_TESTDATA/$suite"
    ) &
    gen_pids+=($!)
  done
fi

# 3. The shim, against this machine's libtorch; the binaries find it through LD_LIBRARY_PATH.
TORCH_DIR=$("$PY" -c 'import os, torch; print(os.path.dirname(torch.__file__))') || { echo "no torch in $PY"; exit 1; }
build_shim() { # mode; an existing build for the same libtorch is reused (incremental)
  grep -qxF "LIBTORCH:PATH=$TORCH_DIR" "$B/build/CMakeCache.txt" 2>/dev/null || rm -rf "$B/build"
  cmake -S . -B "$B/build" -DCMAKE_BUILD_TYPE=Release -DLIBTORCH="$TORCH_DIR" -DAFFGD_TORCH_MODE="$1" &&
    cmake --build "$B/build" -j"$(nproc)"
}
if ! step shim build_shim AUTO; then
  step shim-plain build_shim PLAIN || { echo "gpu-check.sh: the shim does not build here"; exit 1; }
fi
export LD_LIBRARY_PATH=$B/build${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export AFFGD_BIN=$BIN/affgd AFFGD_REPO=$ROOT AFFGD_PYTHON=$PY AFFGD_TEST_DEVICE=$DEV
export AFFGD_BPE_VOCAB=$AFFGD_TESTDATA/tokenizer/bpe_simple_vocab_16e6.txt.gz
step info "$BIN/affgd" info

# 4. The method end to end on the device.
SYN=$WORK/synth
size_flag=--full-size
crop=224 resize=256 batch=8 steps=3 tests=8
if [ "$QUICK" = 1 ]; then size_flag="" crop=64 resize=72 batch=2 steps=2 tests=2; fi
step synth "$BIN/affgd" synth --out "$SYN" $size_flag --vocab "$AFFGD_BPE_VOCAB"
cat >"$WORK/train.yaml" <<EOF
data_root: $SYN/data
dino: $(ls "$SYN"/weights/dino_*.pth)
clip: $(ls "$SYN"/weights/clip_*.pt)
vocab: $AFFGD_BPE_VOCAB
device: $DEV
deterministic: true
epochs: 2
batch_size: $batch
resize_size: $resize
crop_size: $crop
max_steps_per_epoch: $steps
test_limit: $tests
workers: 4
EOF
cp "$WORK/train.yaml" "$OUTDIR/train.yaml"
step train "$BIN/affgd" train --config "$WORK/train.yaml" --out-dir "$WORK/runA"
step train-cut "$BIN/affgd" train --config "$WORK/train.yaml" --out-dir "$WORK/runB" --epochs 1
step train-resume "$BIN/affgd" train --config "$WORK/train.yaml" --out-dir "$WORK/runB" --epochs 2 --resume
step resume-equals-uninterrupted cmp "$WORK/runA/last.pth" "$WORK/runB/last.pth"
step eval "$BIN/affgd" eval --dataset agd20k-seen --data-root "$SYN/data" --checkpoint "$WORK/runA/last.pth" --vocab "$AFFGD_BPE_VOCAB" --device "$DEV" --json
imgs=$(find "$SYN/data/Seen/testset/egocentric" -name '*.jpg' -o -name '*.png' | sort | head -2)
step predict "$BIN/affgd" predict $(for i in $imgs; do printf -- '--image %s ' "$i"; done) --action hold \
  --checkpoint "$WORK/runA/last.pth" --vocab "$AFFGD_BPE_VOCAB" --device "$DEV" --out "$WORK/pred"
# The loader's wait on the device (issue 10 item 4): 1 worker and every core, 12 steps each; the
# trainer logs per epoch how long the steps waited for their batches ("data: the first step
# waited …") and, on a GPU, the copies' device time on the copy stream and how many steps were
# queued before their batch's copy had completed ("data: copies to …"). Not in --quick.
if [ "$QUICK" = 0 ]; then
  for w in 1 "$(nproc)"; do
    step "train-loader-workers-$w" "$BIN/affgd" train --config "$WORK/train.yaml" --out-dir "$WORK/loader-w$w" \
      --epochs 1 --max-steps-per-epoch 12 --test-limit 1 --workers "$w"
  done
fi

# 5. Bad input: one line each, naming the device / batch size and memory.
expect_error() { # name want... -- command...
  local name=$1; shift
  local want=()
  while [ "$1" != "--" ]; do want+=("$1"); shift; done
  shift
  local s; s=$(date +%s.%N)
  "$@" >"$LOGS/$name.log" 2>&1
  local r=$? ok=1
  [ "$r" -eq 1 ] || ok=0
  # One error line of ours ("affgd: ..."), holding every expected word; progress lines may precede it.
  local lines; lines=$(tr '\r' '\n' <"$LOGS/$name.log" | grep -o 'affgd: .*')
  [ "$(printf '%s\n' "$lines" | grep -c .)" -eq 1 ] || ok=0
  local line=$lines
  for w in "${want[@]}"; do [[ "$line" == *"$w"* ]] || ok=0; done
  grep -qE 'panic:|terminate called|SIGSEGV' "$LOGS/$name.log" && ok=0
  record "$name" $((1 - ok)) "$s" "$(date +%s.%N)" "$* (expects exit 1 with: ${want[*]})"
  if [ $ok = 1 ]; then echo "== $name: ok"; else rc=1; echo "== $name: FAILED"; cat "$LOGS/$name.log"; fi
}
if [ "$DEV" = cpu ]; then
  expect_error bad-device cuda "CUDA is not available" "the only device is cpu" -- "$BIN/affgd" eval --dataset agd20k-seen --data-root "$SYN/data" --checkpoint "$WORK/runA/last.pth" --vocab "$AFFGD_BPE_VOCAB" --device cuda
else
  expect_error bad-device cuda:7 "CUDA device(s)" -- "$BIN/affgd" eval --dataset agd20k-seen --data-root "$SYN/data" --checkpoint "$WORK/runA/last.pth" --vocab "$AFFGD_BPE_VOCAB" --device cuda:7
  # A step far larger than the GPU: 2048² crops (16384 tokens per image; DINO's last-block
  # attention alone is 6.4 GB an image). The message must be ours, one line; that the last
  # checkpoint and state stay intact and --resume works is the trainer's
  # TestOutOfMemoryKeepsTheLastCheckpoint (run below on this device).
  expect_error out-of-memory "out of memory" "batch_size 8" "requested" "free" -- timeout 120 "$BIN/affgd" train --config "$WORK/train.yaml" \
    --out-dir "$WORK/oom" --batch-size 8 --crop-size 2048 --resize-size 2048 --epochs 1
fi

# 6. Benchmarks against the released code on the same device.
REF=$B/selcl
if [ "$QUICK" = 1 ]; then bargs=(--batch 1 --iters 1); eargs=(--limit 2); else bargs=(--batch 8 --iters 3); eargs=(); fi
threads=$(nproc)
step bench-step "$BIN/affgd" bench step --device "$DEV" --against released --ref "$REF" --python "$PY" --threads "$threads" --cache-text "${bargs[@]}"
[ "$QUICK" = 1 ] || step bench-step-deterministic "$BIN/affgd" bench step --device "$DEV" --against released --ref "$REF" --python "$PY" --threads "$threads" --cache-text --deterministic "${bargs[@]}"
step bench-eval "$BIN/affgd" bench eval --device "$DEV" --against released --ref "$REF" --python "$PY" --threads "$threads" \
  --data-root "$SYN/data" --vocab "$AFFGD_BPE_VOCAB" "${eargs[@]}"

# 7. The test suites on the device, once their data is ready.
# Wait for the generators while the budget lasts; suites whose data is not ready by then are
# reported as not run, and the generators still running are stopped (by their ids).
while :; do
  running=()
  for p in "${gen_pids[@]}"; do kill -0 "$p" 2>/dev/null && running+=("$p"); done
  [ ${#running[@]} -eq 0 ] && break
  if [ "$(elapsed)" -gt "$BUDGET" ]; then
    echo "== the budget is spent with ${#running[@]} generator(s) still running: stopping them"
    for p in "${running[@]}"; do pkill -P "$p" 2>/dev/null; kill "$p" 2>/dev/null; done
    break
  fi
  sleep 2
done
short=()
[ "$QUICK" = 1 ] && short=(-test.short)
suite() { # binary package-dir [suites needed...]
  local bin=$1 dir=$2; shift 2
  for s in "$@"; do
    if [ ! -f "$AFFGD_TESTDATA/$s/.stamp" ]; then skip "test-$bin" "reference data $s could not be made here (logs/gen-$s.log)"; rc=1; return; fi
  done
  if [ "$(elapsed)" -gt "$BUDGET" ]; then skip "test-$bin" "the time budget of ${BUDGET}s is spent"; rc=1; return; fi
  (cd "$ROOT/$dir" && step "test-$bin" "$BIN/$bin.test" -test.count=1 "${short[@]}" -test.timeout=10m)
  [ $? -eq 0 ] || rc=1
}
# The method's suites first: they matter most when the budget runs short.
suite train train method checkpoint
suite models-head models/head head
suite losses losses losses
suite discovery discovery discovery
suite evaluate evaluate eval
suite trainer trainer
suite affgd-cli cmd/affgd
suite torch torch ops
suite torch-optim torch/optim optim
suite models-dino models/dino dino
suite models-clip models/clip clip

# The report.
"$PY" - "$OUTDIR" "$LOGS" <<'EOF'
import json, os, sys
out, logs = sys.argv[1], sys.argv[2]
machine = json.load(open(os.path.join(out, "machine.json")))
steps = [json.loads(l) for l in open(os.path.join(out, "steps.jsonl")) if l.strip()]
for s in steps:
    p = os.path.join(logs, s["name"] + ".log")
    s["output"] = open(p, errors="replace").read()[-6000:] if os.path.exists(p) else ""
    s["status"] = "not run" if s["rc"] == -1 else ("ok" if s["rc"] == 0 else "FAILED")
ok = all(s["rc"] == 0 for s in steps)
json.dump({"machine": machine, "passed": ok, "steps": steps}, open(os.path.join(out, "gpu-report.json"), "w"), indent=1)
md = ["# affgd GPU check", "", "machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()), "",
      "| step | status | seconds | command |", "| --- | --- | --- | --- |"]
for s in steps:
    md.append(f"| {s['name']} | {s['status']} | {s['seconds']} | `{s['command'] or s['note']}` |")
md += ["", "## Figures (each under its command)", ""]
for s in steps:
    if s["name"].startswith(("bench", "eval", "train", "resume", "out-of-memory", "bad-device")):
        md += [f"### {s['name']}: `{s['command']}`", "", "```", s["output"].strip()[-3000:], "```", ""]
open(os.path.join(out, "gpu-report.md"), "w").write("\n".join(md) + "\n")
print(f"gpu-check: {'PASSED' if ok else 'FAILED'}; report in {out}/gpu-report.md and gpu-report.json")
EOF
echo "gpu-check: $(elapsed)s"
exit $rc
