#!/usr/bin/env bash
# Set up a venv (jax CPU, torch 2.13.0 CPU, transformers) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
pip install -q -e '.[test]'
export HF_HUB_OFFLINE=1
python -m pytest -q tests "$@"
