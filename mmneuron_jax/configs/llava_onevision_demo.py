"""MMNeuron on the embedded demo with LLaVA-OneVision: a tiny random-weight LLaVA-OneVision (SigLIP
tower, Qwen2 decoder, anyres-max packing with the bilinear shrink; data/synthetic/demo_llava_onevision.py)
on the synthetic five-domain demo set, the LLaVA-NeXT demo's sample counts. Untrained: the
deactivation deltas show the pipeline runs, not a finding. Minutes on a CPU.

COMMAND: python -m mmneuron_jax --config=llava_onevision_demo --workdir=runs/llava_onevision_demo
"""
from mmneuron_jax.configs import llava_next_demo, llava_onevision_7b, mmneuron_base


def get_config(arg=None):
  c = llava_next_demo.get_config()
  llava_onevision_7b.onevision_fields(c)
  c.model.id = "demo/tiny-llava-onevision"
  c.model.demo = "llava_onevision"
  c.model.demo_weights = "random"  # no trained tiny LLaVA-OneVision is bundled
  c.data.source = "demo"
  c.stats.split, c.eval.split, c.lens.split = "train", "val", "train"  # the authors' splits
  c.eval.metric = "authors"
  return mmneuron_base.apply_arg(c, arg)
