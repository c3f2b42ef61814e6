"""Train the tiny Qwen2-VL demo model on the learnable synthetic MINER set (data/synthetic/miner_skills.py:
image QA, captions, text-only multiple choice, video QA) in the MINER chat template, and write it as a
HF checkpoint (safetensors, config, tokenizer, image processor) that HF transformers loads too.

The recipe (tasks/train_demo/recipes.py, 'qwen2_vl') fixes data, model size, seeds and optimiser, so on a
CPU this rewrites the bundled checkpoint bit for bit (its `train_demo.json` names the weights' sha256):

COMMAND: python -m mmneuron_jax --config=train_demo_qwen2_vl --workdir=runs/train_demo_qwen2_vl --config.out=mmneuron_jax/data/synthetic/demo_assets/trained_qwen2_vl

`--config.out` defaults to <workdir>/checkpoint; `--config.recipe.steps=...` etc. change the recipe
(a changed recipe no longer matches the bundle, so the MINER demo then trains its own on first use).
About 15-20 minutes on 2 CPU cores.
"""
import ml_collections

from mmneuron_jax.tasks.train_demo import recipes


def get_config(arg=None, family="qwen2_vl"):
  del arg
  c = ml_collections.ConfigDict()
  c.task = "train_demo_miner"
  c.family = family
  c.out = ""
  r = recipes.recipe(c.family)
  # Tuples are recipe identity (datasets); every scalar is overridable from the command line.
  c.recipe = ml_collections.ConfigDict({k: v for k, v in r.items()
                                        if k not in ("version", "family", "data") + recipes.TUPLES})
  return c
