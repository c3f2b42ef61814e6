"""MMNeuron on LLaVA-NeXT-7B (llava-hf/llava-v1.6-vicuna-7b-hf) with the paper's five datasets.

COMMAND: python -m mmneuron_jax --config=llava_next_7b --workdir=runs/llava_next_7b \
  --config.model.path=/data/llava-v1.6-vicuna-7b-hf --config.data.path=/data/mmneuron
"""
from mmneuron_jax.configs import mmneuron_base


def get_config(arg=None):
  c = mmneuron_base.get_config()
  c.model.id = "llava-hf/llava-v1.6-vicuna-7b-hf"
  c.data.source = "paper"
  c.stats.vision_tokens_per_domain = 100_000
  c.eval.n_per_domain = 1001
  return mmneuron_base.apply_arg(c, arg)
