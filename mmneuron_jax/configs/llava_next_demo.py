"""MMNeuron on the embedded demo: tiny LLaVA-NeXT (built deterministically through the HF
conversion path) and a synthetic five-domain image set. Minutes on a CPU.

COMMAND: python -m mmneuron_jax --config=llava_next_demo --workdir=runs/llava_next_demo
"""
from mmneuron_jax.configs import mmneuron_base


def get_config(arg=None):
  c = mmneuron_base.get_config()
  c.model.id = "demo/tiny-llava-next"
  c.data.source = "demo"
  c.data.n_per_domain = 16
  c.stats.max_samples_per_domain = 12
  c.stats.vision_tokens_per_domain = 0
  c.stats.batch_size = 4
  c.stats.commit_every = 2
  c.dape.top_rate = 0.05  # the tiny model has few neurons; 1% would select 2-4 per module
  c.eval.n_per_domain = 4
  c.eval.batch_size = 4
  c.eval.max_new_tokens = 6
  c.lens.n_per_domain = 4
  return mmneuron_base.apply_arg(c, arg)
