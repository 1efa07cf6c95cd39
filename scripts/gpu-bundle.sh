#!/usr/bin/env bash
# Builds gpu-bundle/ (ignored, never committed): what scripts/gpu-check.sh needs on a machine with
# PyTorch (CUDA), cmake and g++ but no Go and no network. Run by `make gpu-bundle`.
#
#   gpu-bundle/bin/          bin/affgd and the Go test binaries (stripped) of every package that
#                            computes: torch, torch/optim, models/{dino,clip,head}, discovery,
#                            losses, train, evaluate, trainer, cmd/affgd (affgd-cli.test)
#   gpu-bundle/testdata/     the reference data that fits the device tool's 64 MiB (the suites
#                            whose generators need what a PyTorch image may lack: tokenizer's
#                            vocabulary and tables); gpu-check.sh makes every other suite there
#                            with that machine's PyTorch (tests/*/gen_*.py), as the CPU
#                            reference of its own CPU
#   gpu-bundle/selcl/        the released code (hynnsk/SelectiveCL), `git archive HEAD` of
#                            $RELEASED_MIRROR (outside the repository; never committed)
#   gpu-bundle/py/NAME/      pure-Python packages the released code, tests/bench and the
#                            generators import and a PyTorch install may lack (fast_pytorch_kmeans,
#                            ftfy, wcwidth, open_clip, tqdm, packaging), each in its own folder so gpu-check.sh
#                            adds only those the machine's Python cannot import; regex (compiled)
#                            goes to py-cp<ver>/ and is used only by a Python of that version
#   gpu-bundle.tar.xz        all of the above in one file: the thing to carry (its size is printed
#                            and checked against the 64 MiB limit)
set -euo pipefail
cd "$(dirname "$0")/.."
: "${VENV:?VENV must be set (the Makefile sets it)}"
MIRROR=${RELEASED_MIRROR:-/work/.mirror/hynnsk+SelectiveCL/repo}
PY=$VENV/bin/python
B=gpu-bundle
LIMIT=$((60 * 1024 * 1024)) # the device tool carries 64 MiB with the working tree; keep a margin

rm -rf "$B" gpu-bundle.tar.xz
mkdir -p "$B/bin" "$B/testdata" "$B/py" "$B/selcl"

echo "gpu-bundle: Go binaries"
go build -ldflags='-s -w' -o "$B/bin/affgd" ./cmd/affgd
for p in torch torch/optim models/dino models/clip models/head discovery losses train evaluate trainer; do
  go test -c -ldflags='-s -w' -o "$B/bin/$(echo "$p" | tr / -).test" "./$p"
done
go test -c -ldflags='-s -w' -o "$B/bin/affgd-cli.test" ./cmd/affgd

echo "gpu-bundle: reference data carried (the rest is made on the device)"
cp -a tests/testdata/tokenizer "$B/testdata/"

echo "gpu-bundle: the released code from $MIRROR"
git -C "$MIRROR" archive HEAD | tar -x -C "$B/selcl"
rm -rf "$B/selcl/.idea"
git -C "$MIRROR" rev-parse HEAD >"$B/selcl/.commit"

echo "gpu-bundle: pure-Python packages from the venv"
site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
for m in fast_pytorch_kmeans ftfy wcwidth open_clip tqdm packaging; do
  mkdir -p "$B/py/$m"
  cp -a "$site/$m" "$B/py/$m/"
  find "$B/py/$m" -name __pycache__ -prune -exec rm -rf {} +
done
ver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
mkdir -p "$B/py-cp$ver/regex"
cp -a "$site/regex" "$B/py-cp$ver/regex/"
find "$B/py-cp$ver" -name __pycache__ -prune -exec rm -rf {} +

tar -C . -cf - "$B" | xz -T0 -6 >gpu-bundle.tar.xz
mv gpu-bundle.tar.xz "$B/"
size=$(stat -c %s "$B/gpu-bundle.tar.xz")
echo "gpu-bundle: $B/gpu-bundle.tar.xz is $((size / 1024 / 1024)) MiB ($size bytes); unpacked $(du -sh "$B" --exclude=gpu-bundle.tar.xz | cut -f1)"
if [ "$size" -gt "$LIMIT" ]; then
  echo "gpu-bundle: too large for the device tool's 64 MiB (limit used: $((LIMIT / 1024 / 1024)) MiB)" >&2
  exit 1
fi
echo "gpu-bundle: carry it with the device tool as carry=[\"gpu-bundle/gpu-bundle.tar.xz\"], then run scripts/gpu-check.sh"
