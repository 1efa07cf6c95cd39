#!/usr/bin/env bash
# Runs affgd's torch/ checks on a CUDA machine that has PyTorch (with CUDA) but no Go toolchain.
#
# Here (a machine with Go):   make cuda-bundle      # bin/*.test, bin/affgd, tests/testdata
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
# AUTO mode uses find_package(Torch) when the CUDA toolkit is installed; if that configuration
# fails (a CUDA torch's CMake config is picky about the toolkit), fall back to PLAIN.
build_shim() { # mode
  rm -rf build
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DLIBTORCH="$TORCH_DIR" -DAFFGD_TORCH_MODE="$1" >"$OUT/cmake-$1.log" 2>&1 &&
    cmake --build build -j"$(nproc)" >>"$OUT/cmake-$1.log" 2>&1
}
if build_shim AUTO; then log "shim built, $(grep -o 'mode [A-Z_]*' "$OUT/cmake-AUTO.log" | head -1)"
elif build_shim PLAIN; then log "shim: AUTO configuration failed (see cmake-AUTO.log: $(grep -m1 -i error "$OUT/cmake-AUTO.log")); built in PLAIN mode"
else log "shim build FAILED"; tail -30 "$OUT/cmake-PLAIN.log"; exit 1; fi
readelf -d build/libaffgd_torch.so | grep -E 'NEEDED.*(cuda|torch)' | tee -a "$OUT/summary.txt"

export AFFGD_TESTDATA=$PWD/tests/testdata AFFGD_PYTHON=$PY
# References are made on THIS machine's CPU by its PyTorch: another CPU (AVX-512 vs AVX2, other
# thread counts) legitimately rounds some kernels differently from the machine that built bin/.
log "making the CPU references with $("$PY" -c 'import torch; print(torch.__version__)')"
# dino's references are made here too (its generator needs only torch); clip's need open_clip,
# which a GPU image may lack: they are made here when open_clip imports, else carried over.
suites="ops optim dino"
"$PY" -c 'import open_clip' 2>/dev/null && suites="$suites clip"
for suite in $suites; do
  "$PY" tests/$suite/gen_$suite.py --out tests/testdata/$suite >"$OUT/gen-$suite.log" 2>&1 || { log "gen_$suite FAILED"; tail -20 "$OUT/gen-$suite.log"; exit 1; }
done
rc=0
run() { # name, command...
  local name=$1; shift
  if "$@" >"$OUT/$name.log" 2>&1; then log "$name: ok ($(grep -cE '^(=== RUN|--- PASS)' "$OUT/$name.log" || true) lines of test output)"
  else rc=1; log "$name: FAILED"; tail -40 "$OUT/$name.log" | tee -a "$OUT/summary.txt"; fi
}
bin/affgd info | tee -a "$OUT/summary.txt"
run torch-cuda env AFFGD_TEST_DEVICE=cuda:0 bin/torch.test -test.v -test.count=1
run torch-cpu bin/torch.test -test.count=1
run optim-cuda env AFFGD_TEST_DEVICE=cuda:0 bin/optim.test -test.v -test.count=1
[ -x bin/dino.test ] && run dino-cuda env AFFGD_TEST_DEVICE=cuda:0 bin/dino.test -test.v -test.count=1
[ -x bin/clip.test ] && run clip-cuda env AFFGD_TEST_DEVICE=cuda:0 bin/clip.test -test.v -test.count=1
run bench-cuda bin/affgd bench ops --device cuda:0 --python "$PY"
[ -n "${BENCH_CPU:-}" ] && run bench-cpu bin/affgd bench ops --device cpu --python "$PY" --scale 0.5
run bench-backbones-cuda bin/affgd bench backbones --device cuda:0 --python "$PY"
cat "$OUT"/bench-*.log >>"$OUT/summary.txt"
exit $rc
