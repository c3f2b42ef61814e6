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

# LLaVA-OneVision answers in the Qwen2 ChatML turn of its chat template (the pipeline's OneVision template),
# image through the anyres-max packing of data/synthetic/demo_llava_onevision.py.
LLAVA_ONEVISION = dict(LLAVA_NEXT, family="llava_onevision", template="qwen_chatml")

# The MINER demos (data/synthetic/miner_skills.py): the datasets of configs/miner_qwen2_*_demo.py, in the
# pipeline's chat template; each training batch holds one dataset's rows (a few fixed shapes). The model is
# the family's demo checkpoint with `layers` x `intermediate` LLM neurons (2% of 4 x 256 = 20 neurons).
QWEN2_VL = dict(
    version=VERSION, family="qwen2_vl", data="miner_skills", data_seed=0,
    datasets=("image_qa", "caption", "text_mc", "video_qa"), n_train_per_dataset=160, n_val_per_dataset=24,
    layers=4, intermediate=256, model_seed=0, seed=0, steps=400, batch_size=8, lr=3e-3, warmup=30,
    length_multiple=16, max_new_tokens=10)
QWEN2_AUDIO = dict(QWEN2_VL, family="qwen2_audio", datasets=("audio_qa", "text_mc"))

RECIPES = {"llava_next": LLAVA_NEXT, "instructblip": INSTRUCTBLIP, "llava_onevision": LLAVA_ONEVISION, "qwen2_vl": QWEN2_VL, "qwen2_audio": QWEN2_AUDIO}
# The tuple fields of a recipe (its identity; the train_demo configs leave them off the command line).
TUPLES = ("domains", "datasets")


def recipe(family: str, **overrides) -> dict:
  """The default recipe of `family` with `overrides` (unknown keys are refused)."""
  if family not in RECIPES:
    raise ValueError(f"no trained-demo recipe for family {family!r}; recipes: {sorted(RECIPES)}")
  base = dict(RECIPES[family])
  unknown = set(overrides) - set(base)
  if unknown:
    raise KeyError(f"recipe overrides {sorted(unknown)} are not recipe fields {sorted(base)}")
  base.update(overrides)
  for k in TUPLES:
    if k in base:
      base[k] = tuple(base[k])
  return base


def digest(r: dict) -> str:
  """12 hex digits of sha256 over the recipe's canonical JSON."""
  text = json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in sorted(r.items())}, sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:12]
