"""MINER on the embedded demo: a tiny Qwen2-VL trained to answer a learnable synthetic set
(data/synthetic/miner_skills.py: image QA, captions, text-only multiple choice, 4-frame video QA; every
answer follows from the media or the words). The trained checkpoint is bundled
(mmneuron_jax/configs/train_demo_qwen2_vl.py rewrites it); every stage runs on the held-out 'val' split.
Minutes on a CPU. `--config.model.demo_weights=random --config.data.source=demo` runs the untrained
random-weight demo (a 3 x 128-neuron model built in the workdir) on the older fixed demo samples.

COMMAND: python -m mmneuron_jax --config=miner_qwen2_vl_demo --workdir=runs/miner_qwen2_vl_demo
"""
from mmneuron_jax.configs import miner_base


def get_config(arg=None):
  c = miner_base.get_config()
  c.model.family = "qwen2_vl"
  c.model.id = "demo/tiny-qwen2-vl"
  c.model.demo_weights = "trained"  # 'random': the untrained checkpoint built in the workdir
  c.data.source = "skills"
  c.data.split = "val"  # the held-out split (what the bundled model's pinned numbers were measured on)
  c.data.datasets = ("image_qa", "caption", "text_mc", "video_qa")
  c.data.n_per_dataset = 24
  c.data.min_pixels = c.data.max_pixels = 0  # the demo checkpoint's own bounds keep its 84 x 84 images small
  c.select.video = True  # the demo selects (and switches off) a video set too
  c.deactivate.generation = "config"  # greedy: the demo checkpoint has no generation_config.json
  c.scores.batch_size = 4
  c.scores.commit_every = 1
  c.scores.grad = True
  c.select.ratio = 0.02  # the trained demo's LLM has 4 x 256 neurons: K = 20
  c.select.grad_weight = 0.0
  c.deactivate.conditions = ("none", "all", "image", "video", "text", "complement", "random")
  c.deactivate.n_per_dataset = 24
  c.deactivate.max_new_tokens = 10  # captions are up to 7 words
  # the optional studies run in seconds here: sweeps (selection + deactivation on 2 samples per dataset),
  # snapshots at 2 / 4 / 8 of the 24 samples, Findings III and IV on 4 samples.
  c.stages = ("scores", "select", "deactivate", "sweep", "last_token", "semantics")
  c.scores.snapshots = (2, 4, 8)
  c.sweep.n_per_dataset = 2
  c.last_token.n_per_dataset = 4
  c.semantics.n_per_dataset, c.semantics.batch_size = 4, 4
  return miner_base.apply_arg(c, arg)


def random_demo(c):
  """`c` switched to the untrained random-weight demo (3 x 128 LLM neurons built in the workdir) on the
  fixed demo samples, with the sizes that suit it (what the tests of the pipeline mechanics run)."""
  c.model.demo_weights, c.data.source = "random", "demo"
  c.data.n_per_dataset = 12
  c.select.ratio = 0.05  # 3 x 128 neurons: 2% would be 7
  c.deactivate.n_per_dataset, c.deactivate.max_new_tokens = 4, 6
  return c
