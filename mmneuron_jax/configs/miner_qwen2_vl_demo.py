"""MINER on the embedded demo: a tiny Qwen2-VL (built deterministically through the HF conversion
path) and bundled synthetic samples (image QA, captions, text-only multiple choice, 4-frame video QA).
~2 min on a CPU.

COMMAND: python -m mmneuron_jax --config=miner_qwen2_vl_demo --workdir=runs/miner_qwen2_vl_demo
"""
from mmneuron_jax.configs import miner_base


def get_config(arg=None):
  c = miner_base.get_config()
  c.model.family = "qwen2_vl"
  c.model.id = "demo/tiny-qwen2-vl"
  c.data.source = "demo"
  c.data.datasets = ("image_qa", "caption", "text_mc", "video_qa")
  c.data.n_per_dataset = 12
  c.data.min_pixels = c.data.max_pixels = 0  # the demo checkpoint's own bounds keep its 84 x 84 images small
  c.select.video = True  # the demo selects (and switches off) a video set too
  c.deactivate.generation = "config"  # greedy: the demo checkpoint has no generation_config.json
  c.scores.batch_size = 4
  c.scores.commit_every = 1
  c.scores.grad = True
  c.select.ratio = 0.05  # the tiny LLM has 3 x 128 neurons: 2% would be 7
  c.select.grad_weight = 0.0
  c.deactivate.conditions = ("none", "all", "image", "video", "text", "complement", "random")
  c.deactivate.n_per_dataset = 4
  c.deactivate.max_new_tokens = 6
  # the optional studies run in seconds here: sweeps (selection + deactivation on 2 samples per dataset),
  # snapshots at 2 / 4 / 8 of the 12 samples, Findings III and IV on 4 samples.
  c.stages = ("scores", "select", "deactivate", "sweep", "last_token", "semantics")
  c.scores.snapshots = (2, 4, 8)
  c.sweep.n_per_dataset = 2
  c.last_token.n_per_dataset = 4
  c.semantics.n_per_dataset, c.semantics.batch_size = 4, 4
  return miner_base.apply_arg(c, arg)
