"""Train the tiny InstructBLIP demo model on the learnable synthetic five-domain set
(data/synthetic/skills.py), in the authors' InstructBLIP prompt, and write it as a HF checkpoint.
See mmneuron_jax/configs/train_demo_llava_next.py; the same recipe fields, family 'instructblip'.

COMMAND: python -m mmneuron_jax --config=train_demo_instructblip --workdir=runs/train_demo_instructblip --config.out=mmneuron_jax/data/synthetic/demo_assets/trained_instructblip
"""
from mmneuron_jax.configs import train_demo_llava_next
from mmneuron_jax.tasks.train_demo import recipes


def get_config(arg=None):
  c = train_demo_llava_next.get_config(arg)
  c.family = "instructblip"
  r = recipes.recipe(c.family)
  for k in c.recipe:
    c.recipe[k] = r[k]
  return c
