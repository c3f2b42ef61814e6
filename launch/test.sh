#!/usr/bin/env bash
# Set up a venv (jax CPU, torch 2.13.0 CPU, transformers) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# Headless Chromium + its driver for the atlas browser test (tests/test_atlas_browser.py), when missing.
if ! { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; }; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"
  { $SUDO apt-get update -q && $SUDO apt-get install -y -q chromium chromium-driver; } ||
    echo "could not install chromium: the atlas browser test skips (and fails when CI is set)" >&2
fi
python3 -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
pip install -q -e '.[test]'
export HF_HUB_OFFLINE=1
if [ "$#" -gt 0 ]; then exec python -m pytest -q tests "$@"; fi
# The default run: the suite, then the full-width hub-checkpoint parity tests (-m heavy: the seven
# published configs at full width, 1 language-model layer; GBs each) in a pytest process of their
# own, so that they start from a clean heap (docs/PERFORMANCE.md: time and peak RSS per case).
# The suite runs in two pytest-xdist workers, a test file per worker at a time (module fixtures built once).
python -m pytest -q tests -m "not heavy" -n 2 --dist loadfile
python -m pytest -q tests -m heavy
