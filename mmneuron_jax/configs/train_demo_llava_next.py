"""Train the tiny LLaVA-NeXT demo model on the learnable synthetic five-domain set
(data/synthetic/skills.py) and write it as a HF checkpoint (safetensors, config, tokenizer, processor).

The recipe (tasks/train_demo/recipes.py) fixes data, prompt format, seeds and optimiser, so on a CPU
this rewrites the bundled checkpoint bit for bit (its `train_demo.json` names the weights' sha256):

COMMAND: python -m mmneuron_jax --config=train_demo_llava_next --workdir=runs/train_demo_llava_next --config.out=mmneuron_jax/data/synthetic/demo_assets/trained_llava_next

`--config.out` defaults to <workdir>/checkpoint; `--config.recipe.steps=...` etc. change the recipe
(a changed recipe no longer matches the bundle, so the MMNeuron demo then trains its own on first use).
"""
import ml_collections

from mmneuron_jax.tasks.train_demo import recipes


def get_config(arg=None):
  del arg
  c = ml_collections.ConfigDict()
  c.task = "train_demo"
  c.family = "llava_next"
  c.out = ""
  r = recipes.recipe(c.family)
  # Tuples are recipe identity (domains); every scalar is overridable from the command line.
  c.recipe = ml_collections.ConfigDict({k: v for k, v in r.items() if k not in ("version", "family", "domains")})
  return c
