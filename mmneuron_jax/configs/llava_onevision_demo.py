"""MMNeuron on the embedded demo with LLaVA-OneVision: a tiny LLaVA-OneVision (SigLIP tower, Qwen2
decoder, anyres-max packing with the bilinear shrink; data/synthetic/demo_llava_onevision.py) trained
to answer the synthetic five-domain set (data/synthetic/skills.py), in the Qwen2 ChatML turn with the
short-answer prompt it was trained on. The trained checkpoint is bundled
(mmneuron_jax/configs/train_demo_llava_onevision.py rewrites it; a run whose prompt format differs trains
its own on first use). The run uses the held-out 'val' split, the LLaVA-NeXT demo's sample counts.
Minutes on a CPU. `--config.model.demo_weights=random --config.data.source=demo` runs the untrained
random-weight demo.

COMMAND: python -m mmneuron_jax --config=llava_onevision_demo --workdir=runs/llava_onevision_demo
"""
from mmneuron_jax.configs import llava_next_demo, llava_onevision_7b, mmneuron_base


def get_config(arg=None):
  c = llava_next_demo.get_config()
  llava_onevision_7b.onevision_fields(c)
  c.model.id = "demo/tiny-llava-onevision"
  c.model.demo = "llava_onevision"
  c.model.demo_weights = "trained"  # 'random': the untrained checkpoint built in the workdir
  c.eval.style = "llava"  # the prompt the bundled model was trained on (recipe style 'llava')
  return mmneuron_base.apply_arg(c, arg)
