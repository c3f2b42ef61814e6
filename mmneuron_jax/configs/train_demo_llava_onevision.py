"""Train the tiny LLaVA-OneVision demo model on the learnable synthetic five-domain set
(data/synthetic/skills.py), in the Qwen2 ChatML turn with the short-answer prompt, and write it as a HF
checkpoint. See mmneuron_jax/configs/train_demo_llava_next.py; the same recipe fields, family 'llava_onevision'.

COMMAND: python -m mmneuron_jax --config=train_demo_llava_onevision --workdir=runs/train_demo_llava_onevision --config.out=mmneuron_jax/data/synthetic/demo_assets/trained_llava_onevision
"""
from mmneuron_jax.configs import train_demo_llava_next
from mmneuron_jax.tasks.train_demo import recipes


def get_config(arg=None):
  c = train_demo_llava_next.get_config(arg)
  c.family = "llava_onevision"
  r = recipes.recipe(c.family)
  for k in c.recipe:
    c.recipe[k] = r[k]
  return c
