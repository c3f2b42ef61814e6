"""What a trained demo checkpoint is a function of (its recipe), per family, and its digest.

The recipe holds every input of the training run: data set version, sizes and seeds, the prompt
format the model is trained to answer in, optimiser settings and the model seed. Two runs of the
same recipe on a CPU write the same weights; the digest names a recipe in reports and tells a
bundled checkpoint that fits a run from one that does not.
"""
import hashlib
import json

# Bump when the synthetic generator or the training code changes what a recipe produces.
VERSION = 1

LLAVA_NEXT = dict(
    version=VERSION, family="llava_next", data="skills", data_seed=0, n_train_per_domain=96,
    n_val_per_domain=16, domains=("auto-driving", "medical", "remote-sensing", "common-scenes", "documents"),
    template="vicuna_v1", style="llava", model_seed=0, seed=0, steps=360, batch_size=8, lr=3e-3, warmup=30,
    length_multiple=32)

# InstructBLIP answers in the authors' prompt (no chat template, "Short Answer:"), image through the Q-Former.
INSTRUCTBLIP = dict(LLAVA_NEXT, family="instructblip", template="plain", style="authors")

RECIPES = {"llava_next": LLAVA_NEXT, "instructblip": INSTRUCTBLIP}


def recipe(family: str, **overrides) -> dict:
  """The default recipe of `family` with `overrides` (unknown keys are refused)."""
  if family not in RECIPES:
    raise ValueError(f"no trained-demo recipe for family {family!r}; recipes: {sorted(RECIPES)}")
  base = dict(RECIPES[family])
  unknown = set(overrides) - set(base)
  if unknown:
    raise KeyError(f"recipe overrides {sorted(unknown)} are not recipe fields {sorted(base)}")
  base.update(overrides)
  base["domains"] = tuple(base["domains"])
  return base


def digest(r: dict) -> str:
  """12 hex digits of sha256 over the recipe's canonical JSON."""
  text = json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in sorted(r.items())}, sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:12]
