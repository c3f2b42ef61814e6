"""The demo training loop and the export of its weights, shared by the MMNeuron and MINER recipes.

Batches are visited in a fixed permuted order per epoch (`np.random.default_rng([seed, 2])`), one
compiled optax step for the whole run; the trained params are written back over the checkpoint's
safetensors in HF's names (the family's own `hf_rules`), so `transformers` loads them.
"""
import jax
import numpy as np
from absl import logging

from mmneuron_jax.convert.export import hf_state
from mmneuron_jax.convert.safetensors_reader import CheckpointReader
from mmneuron_jax.data.synthetic import demo_checkpoint
from mmneuron_jax.io.progress import Progress
from mmneuron_jax.models.registry import family_for
from mmneuron_jax.tasks.train_demo import steps


def fit(model, batches: list, r: dict):
  """Train `model` for r['steps'] Adam steps (r['lr'], r['warmup']) over `batches` (host dicts of one
  fixed shape) -> (params on the host, losses float[steps])."""
  tx = steps.optimizer(r["lr"], r["steps"], r["warmup"])
  params = model.params
  opt_state = tx.init(params)
  step = steps.make_train_step(model.module, tx)
  device = [steps.device_batch(model, b) for b in batches]
  order_rng = np.random.default_rng([r["seed"], 2])
  order, losses = [], []
  progress = Progress(r["steps"], "train_demo (steps)")
  for k in range(r["steps"]):
    if not order:
      order = list(order_rng.permutation(len(device)))
    params, opt_state, loss = step(params, opt_state, device[order.pop()])
    losses.append(float(loss))
    progress.update(1)
    if (k + 1) % 50 == 0:
      logging.info("train_demo step %d: loss %.4f (mean of last 50: %.4f)", k + 1, losses[-1], np.mean(losses[-50:]))
  progress.close()
  return jax.device_get(params), losses


def save_trained(model, params, out_dir: str) -> None:
  """Write `params` over the HF checkpoint in `out_dir` (which `model` was loaded from), in HF's names."""
  family = family_for(model.config)
  reader = CheckpointReader(out_dir)
  state = hf_state(params, family.hf_rules(family.Config.from_hf(model.config)), reader, family.IGNORE)
  reader.close()
  demo_checkpoint.save_checkpoint(out_dir, state, model.config)
