#!/usr/bin/env bash
# Installs what affgd needs to build and test, idempotently and quickly when nothing changed:
#   - Debian packages: a C++ toolchain and cmake (only if missing);
#   - the project venv with the pinned torch and the reference-only packages, kept OUTSIDE the
#     clone (default ~/.cache/affgd/venv-<hash of tests/requirements.txt>) so a fresh clone reuses it;
#   - Go modules;
#   - third_party/libtorch/libtorch -> the venv's torch package (unless LIBTORCH is set).
# If PyPI refuses torch, falls back to Debian's libtorch-dev + python3-torch (1.13.1).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:?VENV must be set (the Makefile sets it)}"
REQ=tests/requirements.txt
stamp="$VENV/.affgd-installed"

need_apt=()
command -v cmake >/dev/null || need_apt+=(cmake)
command -v g++ >/dev/null || need_apt+=(g++)
command -v make >/dev/null || need_apt+=(make)
[ -f /usr/include/jpeglib.h ] || need_apt+=(libjpeg62-turbo-dev) # package data decodes JPEGs with libjpeg-turbo
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then need_apt+=(python3-venv); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "deps: installing Debian packages: ${need_apt[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

if [ ! -f "$stamp" ] || ! cmp -s "$REQ" "$stamp"; then
  echo "deps: creating the project venv at $VENV"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  if "$VENV/bin/pip" install -q -r "$REQ"; then
    :
  else
    # Fallback: Debian's libtorch (1.13.1). The reference generators then run on Debian's torch.
    echo "deps: PyPI refused the pinned torch; falling back to Debian's libtorch-dev + python3-torch (1.13.1)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libtorch-dev python3-torch python3-numpy python3-pil
    rm -rf "$VENV"
    /usr/bin/python3 -m venv --system-site-packages "$VENV"
    grep -vE '^(torch|torchvision|numpy|pillow)==' "$REQ" | "$VENV/bin/pip" install -q -r /dev/stdin || true
    echo "debian" > "$VENV/.affgd-libtorch-debian"
  fi
  cp "$REQ" "$stamp"
fi

go mod download

if [ -z "${LIBTORCH:-}" ]; then
  if [ -f "$VENV/.affgd-libtorch-debian" ]; then
    target=/usr
  else
    target=$("$VENV/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null)
  fi
  ln -sfn "$target" third_party/libtorch/libtorch
fi
echo "deps: ok (venv $VENV, libtorch $(readlink -f "${LIBTORCH:-third_party/libtorch/libtorch}"))"
