"""Neuron sets of finished runs side by side (MMNeuron domain sets and/or MINER modality sets, any
models): distribution over relative depth, overlaps within and between sets.

COMMAND: python -m mmneuron_jax --config=compare_runs --workdir=runs/compare \
  --config.compare.runs="('runs/miner_qwen2_vl_demo','runs/llava_next_demo')"
"""
import ml_collections

from mmneuron_jax.configs.mmneuron_base import apply_arg


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.task = "compare"
  # runs: run directories holding neurons/<module>.json; labels: optional names, one per run.
  c.compare = ml_collections.ConfigDict(dict(runs=(), labels=(), module="llm", bins=10))
  return apply_arg(c, arg)
