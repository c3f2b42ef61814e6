#!/usr/bin/env bash
# Set up a venv, install the package and run the MMNeuron pipeline on the embedded demo (tiny model,
# synthetic data). The same run from anywhere after `pip install .`: `mmneuron --config=llava_next_demo --workdir=...`.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
pip install -q .
export HF_HUB_OFFLINE=1
# The study plus its neuron atlas (the optional 'atlas' stage, tasks/atlas/).
python -m mmneuron_jax --config=llava_next_demo --workdir="${WORKDIR:-runs/llava_next_demo}" \
  --config.stages="('stats','select','eval','lens','atlas')" "$@"
echo "report: ${WORKDIR:-runs/llava_next_demo}/report.md"
echo "atlas: ${WORKDIR:-runs/llava_next_demo}/atlas/index.html"
