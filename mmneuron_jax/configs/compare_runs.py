"""Neuron sets of finished runs side by side (MMNeuron domain sets and/or MINER modality sets, any
model families): each run's family, distribution over relative depth, overlaps within sets and between
sets of one family and module shape, deactivation deltas vs `none`.

COMMAND: python -m mmneuron_jax --config=compare_runs --workdir=runs/compare \
  --config.compare.runs="('runs/miner_qwen2_vl_demo','runs/miner_qwen2_5_vl_demo','runs/llava_next_demo')"
"""
import ml_collections

from mmneuron_jax.configs.mmneuron_base import apply_arg


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.task = "compare"
  # runs: run directories holding neurons/<module>.json; labels: optional names, one per run.
  c.compare = ml_collections.ConfigDict(dict(runs=(), labels=(), module="llm", bins=10))
  return apply_arg(c, arg)
