#!/usr/bin/env bash
# Installs headless Chromium (Debian's chromium package, and a font for its screenshots) for the
# one test that needs it: the check of the HTML report in a real browser (cmd/affgd
# TestCLI/report, internal/browser). It is not needed to build or run affgd. When it cannot be
# installed (no apt, no root, no package) this prints why and succeeds: that test then skips,
# saying so. AFFGD_NO_BROWSER=1 skips the install.
set -uo pipefail

for b in "${AFFGD_CHROMIUM:-}" chromium chromium-browser google-chrome google-chrome-stable; do
  if [ -n "$b" ] && command -v "$b" >/dev/null 2>&1; then
    exit 0
  fi
done
if [ "${AFFGD_NO_BROWSER:-}" = 1 ]; then
  echo "deps: AFFGD_NO_BROWSER=1: not installing chromium (the report's browser test will skip)"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
  echo "deps: chromium is missing and cannot be installed here (needs apt-get as root): the report's browser test will skip" >&2
  exit 0
fi
echo "deps: installing chromium (headless browser for the report test)"
install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; }
if ! install; then
  apt-get update -qq && install || {
    echo "deps: could not install chromium: the report's browser test will skip" >&2
    exit 0
  }
fi
