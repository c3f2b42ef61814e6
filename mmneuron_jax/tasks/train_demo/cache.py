"""A trained demo checkpoint for a recipe: the bundled one when its recipe digest matches, else a
copy trained on first use (and kept in the run directory, so a rerun reuses it).

Bundled checkpoints live in `mmneuron_jax/data/synthetic/demo_assets/trained_<family>/`, each with the
`train_demo.json` that names its recipe, digest, weights hash and held-out accuracy; the
`mmneuron_jax/configs/train_demo_<family>.py` command rewrites them bit for bit on a CPU.
"""
import json
import os
import shutil

from absl import logging

from mmneuron_jax.tasks.train_demo import recipes
from mmneuron_jax.tasks.train_demo.training import RECIPE_FILE
from mmneuron_jax.tasks.train_demo.training import train

BUNDLE_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "data",
                           "synthetic", "demo_assets")


def bundled_path(family: str) -> str:
  return os.path.join(BUNDLE_ROOT, f"trained_{family}")


def read_result(path: str) -> dict | None:
  """The train_demo.json of a checkpoint directory, or None."""
  file = os.path.join(path, RECIPE_FILE)
  if not os.path.isfile(file):
    return None
  with open(file) as f:
    return json.load(f)


def ensure(path: str, recipe: dict, train_fn=None) -> dict:
  """A checkpoint of `recipe` in `path` -> its train_demo.json record (with 'source': 'cached',
  'bundled' or 'trained now'). train_fn(recipe, path): the recipe's trainer (default: training.train,
  the MMNeuron skills set; the MINER families pass miner_training.train)."""
  want = recipes.digest(recipe)
  have = read_result(path)
  if have is not None and have.get("digest") == want:
    return dict(have, source="cached")
  bundle = bundled_path(recipe["family"])
  bundled = read_result(bundle)
  if bundled is not None and bundled.get("digest") == want:
    if os.path.isdir(path):
      shutil.rmtree(path)
    shutil.copytree(bundle, path)
    return dict(bundled, source="bundled")
  logging.warning("no bundled trained %s demo for recipe %s (bundled: %s): training it now into %s; this takes "
                  "minutes on a CPU", recipe["family"], want, None if bundled is None else bundled.get("digest"), path)
  if os.path.isdir(path):
    shutil.rmtree(path)
  return dict((train_fn or train)(recipe, path), source="trained now")

