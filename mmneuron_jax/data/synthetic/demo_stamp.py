"""Rebuild a run's demo checkpoint when what it is built from changes (family, seed, vocabulary).

The build inputs are stamped into `<checkpoint>/demo_build.json`; `ensure(path, build, **inputs)`
builds when the directory has no checkpoint or its stamp differs, so `model.seed=1` gives a model
of seed 1 instead of reusing the old one (whose statistics then no longer match: the resume
fingerprint refuses them).
"""
import json
import os
import shutil

from mmneuron_jax.io import fingerprint

STAMP = "demo_build.json"


def ensure(path: str, build, family: str, texts, seed: int) -> None:
  """build(path, texts, seed=seed) unless path holds a checkpoint built from these inputs."""
  stamp = {"family": family, "seed": int(seed), "vocabulary": fingerprint.digest(list(texts))}
  try:
    with open(os.path.join(path, STAMP)) as f:
      if json.load(f) == stamp and os.path.exists(os.path.join(path, "config.json")):
        return
  except (OSError, ValueError):
    pass
  if os.path.exists(path):
    shutil.rmtree(path)
  build(path, texts, seed=seed)
  with open(os.path.join(path, STAMP), "w") as f:
    json.dump(stamp, f)
