"""Train the tiny InstructBLIP demo model on the learnable synthetic five-domain set
(data/synthetic/skills.py), in the authors' InstructBLIP prompt, and write it as a HF checkpoint.
See configs/train_demo_llava_next.py; the same recipe fields, family 'instructblip'.

COMMAND: python launch/main.py --config=configs/train_demo_instructblip.py --workdir=runs/train_demo_instructblip --config.out=mmneuron_jax/data/synthetic/demo_assets/trained_instructblip
"""
from configs import train_demo_llava_next
from mmneuron_jax.tasks.train_demo import recipes


def get_config(arg=None):
  c = train_demo_llava_next.get_config(arg)
  c.family = "instructblip"
  r = recipes.recipe(c.family)
  for k in c.recipe:
    c.recipe[k] = r[k]
  return c
