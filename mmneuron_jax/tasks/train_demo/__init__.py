"""`train_demo`: train a tiny demo model on the learnable synthetic set (data/synthetic/skills.py) and
write it as a HF checkpoint plus report.md (model, held-out accuracy, loss curve, timings).

recipes.py: what a checkpoint is a function of; steps.py: loss and optax step; training.py: the run;
miner_training.py: the same for the MINER families (Qwen2-VL, Qwen2-Audio) on data/synthetic/miner_skills.py
(task 'train_demo_miner': it imports tasks/miner, which this package must not import at load time);
cache.py: bundled or trained-on-first-use checkpoints for the demo configs; report.py: report.md.
"""
import os

from mmneuron_jax.tasks.train_demo import recipes
from mmneuron_jax.tasks.train_demo import report, training


def run(config, workdir: str) -> str:
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=1))
  r = recipes.recipe(config.family, **dict(config.recipe))
  out_dir = config.out or os.path.join(workdir, "checkpoint")
  result = training.train(r, out_dir)
  return report.write(workdir, out_dir, result)
