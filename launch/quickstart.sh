#!/usr/bin/env bash
# Set up a venv and run the MMNeuron pipeline on the embedded demo (tiny model, synthetic data).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
pip install -q -e .
export HF_HUB_OFFLINE=1
python launch/main.py --config=configs/llava_next_demo.py --workdir="${WORKDIR:-runs/llava_next_demo}" "$@"
echo "report: ${WORKDIR:-runs/llava_next_demo}/report.md"
