"""MMNeuron on the embedded demo: a tiny LLaVA-NeXT trained to answer a synthetic five-domain set
whose answers follow from the image, each domain with its own visual skill (data/synthetic/skills.py:
read a glyph, count lesions, car colour, land cover, object colour / shape). The trained checkpoint
is bundled (mmneuron_jax/configs/train_demo_llava_next.py rewrites it; a run whose prompt format differs trains
its own on first use). The run uses the held-out 'val' split. Minutes on a CPU.
`--config.model.demo_weights=random --config.data.source=demo` runs the untrained random-weight demo.

COMMAND: python -m mmneuron_jax --config=llava_next_demo --workdir=runs/llava_next_demo
"""
from mmneuron_jax.configs import mmneuron_base


def get_config(arg=None):
  c = mmneuron_base.get_config()
  c.model.id = "demo/tiny-llava-next"
  c.model.demo_weights = "trained"  # 'random': the untrained checkpoint built in the workdir
  c.data.source = "skills"
  # Every stage on the held-out 'val' split (what the bundled model's pinned numbers were measured on);
  # the model answers in the prompt it was trained on (recipe style 'llava', not the pipeline's 'authors').
  c.stats.split = c.eval.split = c.lens.split = "val"
  c.eval.style = "llava"
  c.eval.metric = "standard"  # the domain metrics the trained demo's held-out accuracy is measured with
  c.data.n_per_domain = 16
  c.stats.max_samples_per_domain = 16
  c.stats.vision_tokens_per_domain = 0
  c.stats.batch_size = 8
  c.stats.commit_every = 2
  c.dape.top_rate = 0.05  # the tiny model has few neurons; 1% would select 2-4 per module
  c.eval.n_per_domain = 16
  c.eval.batch_size = 16
  c.eval.max_new_tokens = 4
  c.lens.n_per_domain = 4
  return mmneuron_base.apply_arg(c, arg)
