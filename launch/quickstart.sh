#!/usr/bin/env bash
# Set up a venv and run the MMNeuron pipeline on the embedded demo: a tiny LLaVA-NeXT trained to answer
# a synthetic five-domain set (bundled checkpoint; data/synthetic/skills.py), held-out samples.
# The same run from anywhere after `pip install .`: `mmneuron --config=llava_next_demo --workdir=...`.
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
REPORT="${WORKDIR:-runs/llava_next_demo}/report.md"
awk '/^## Headline/{f=1; next} f && /^\|/{exit} f && NF' "$REPORT"   # the headline sentence
echo "report: $REPORT"
echo "atlas: ${WORKDIR:-runs/llava_next_demo}/atlas/index.html"
