"""Readouts on the planted ground truth: a tiny LLaVA-NeXT whose vision neurons at layer 2
fire for one hue each and whose LLM layer 3 holds three neurons per hue that write that hue's
answer (mmneuron_jax/data/synthetic/planted_llm.py). Probes must peak at the planted vision layer, learned
masks must recover the planted LLM neurons. About a minute on a CPU.

COMMAND: python -m mmneuron_jax --config=readouts_planted --workdir=runs/readouts_planted
"""
from mmneuron_jax.configs import mmneuron_base, readouts_demo


def get_config(arg=None):
  c = readouts_demo.get_config()
  c.model.id = "planted/tiny-llava-next"
  c.data.source = "planted"
  c.data.n_per_domain = 8
  c.data.domains = tuple(c.planted.hues)
  c.batch_size = 10
  c.tuned_lens.n_per_domain = 8
  c.probes.specs = ("vision:mean:domain", "hidden:mean:domain", "hidden:token:modality")
  c.probes.n_per_domain = 8
  c.masks.n_per_domain = 2
  c.masks.eval_n_per_domain = 2
  c.masks.max_new_tokens = 1
  return mmneuron_base.apply_arg(c, arg)
