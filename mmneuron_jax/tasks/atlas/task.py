"""Task 'atlas': the atlas of a finished MMNeuron run directory (mmneuron_jax/configs/atlas.py)."""
import json
import os

import ml_collections

from mmneuron_jax.tasks.atlas.build import build


def run(config, workdir: str) -> str:
  run_dir = config.get("run_dir") or workdir
  path = os.path.join(run_dir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"config.run_dir={run_dir!r}: no config.json (not a finished run directory)")
  with open(path) as f:
    run_config = ml_collections.ConfigDict(json.load(f))
  run_config.atlas = ml_collections.ConfigDict(config.atlas.to_dict())
  return build(run_dir, run_config)
