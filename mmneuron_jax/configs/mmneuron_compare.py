"""Side-by-side report of finished MMNeuron runs (e.g. LLaVA-NeXT vs InstructBLIP): neuron budgets
per module, domain-specific neurons per layer, deactivation deltas, logit-lens curves.

COMMAND: python -m mmneuron_jax --config=mmneuron_compare --workdir=runs/compare \
  --config.compare_with="('runs/llava_next_demo','runs/instructblip_demo')"
"""
import ml_collections


def get_config(arg=None):
  """`arg`: run directories joined by '+', e.g. `--config=mmneuron_compare:runs/a+runs/b`."""
  c = ml_collections.ConfigDict()
  c.task = "mmneuron_compare"
  c.compare_with = tuple(arg.split("+")) if arg else ("runs/llava_next_demo", "runs/instructblip_demo")
  return c
