#!/usr/bin/env bash
# Runs affgd's torch/ checks on a CUDA machine that has PyTorch (with CUDA) but no Go toolchain.
#
# Here (a machine with Go):   make cuda-bundle      # Go test binaries + bin/affgd + reference data
# There (copy the tree over): scripts/cuda-check.sh [OUT_DIR]
#
# It rebuilds only the shim there, against that machine's PyTorch, then runs the op parity suite
# with every input on cuda:0 (compared with the CPU reference at the CUDA tolerance the tests
# document), the optimizer and memory tests, the concurrency test, `affgd info`, and the op
# benchmark against PyTorch on the same GPU. Output goes to OUT_DIR (default: cuda-check-out/).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-cuda-check-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }

TORCH_DIR=$("$PY" -c 'import os, torch; print(os.path.dirname(torch.__file__))') || { echo "no torch in $PY"; exit 1; }
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name(0))' | tee -a "$OUT/summary.txt"
log "building the shim against $TORCH_DIR"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DLIBTORCH="$TORCH_DIR" >"$OUT/cmake.log" 2>&1 &&
  cmake --build build -j"$(nproc)" >>"$OUT/cmake.log" 2>&1 || { log "shim build FAILED"; tail -30 "$OUT/cmake.log"; exit 1; }

export AFFGD_TESTDATA=$PWD/tests/testdata AFFGD_PYTHON=$PY
rc=0
run() { # name, command...
  local name=$1; shift
  if "$@" >"$OUT/$name.log" 2>&1; then log "$name: ok ($(grep -cE '^(=== RUN|--- PASS)' "$OUT/$name.log" || true) lines of test output)"
  else rc=1; log "$name: FAILED"; tail -40 "$OUT/$name.log" | tee -a "$OUT/summary.txt"; fi
}
bin/affgd info | tee -a "$OUT/summary.txt"
run torch-cuda env AFFGD_TEST_DEVICE=cuda:0 bin/test/torch.test -test.v -test.count=1
run torch-cpu bin/test/torch.test -test.count=1
run optim-cuda env AFFGD_TEST_DEVICE=cuda:0 bin/test/optim.test -test.v -test.count=1
run bench bin/affgd bench ops --device cuda:0 --python "$PY"
cat "$OUT/bench.log" >>"$OUT/summary.txt"
exit $rc
