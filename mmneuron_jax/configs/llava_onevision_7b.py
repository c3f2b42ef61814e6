"""MMNeuron on LLaVA-OneVision-7B (llava-hf/llava-onevision-qwen2-7b-ov-hf) with the paper's five datasets.

Evaluation prompts: the authors' body in the Qwen2 ChatML turn of the model's chat template
(template 'qwen_chatml'). Images: anyres-max tiling (up to 36 tiles of 729 SigLIP patches, packed
and bilinearly shrunk to about 9 tiles' worth of LLM tokens); the stopping rule counts every tile.

COMMAND: python -m mmneuron_jax --config=llava_onevision_7b --workdir=runs/llava_onevision_7b \
  --config.model.path=/data/llava-onevision-qwen2-7b-ov-hf --config.data.path=/data/mmneuron
"""
from mmneuron_jax.configs import mmneuron_base


def onevision_fields(c):
  c.eval.template = "qwen_chatml"
  c.eval.style = "authors"
  return c


def get_config(arg=None):
  c = mmneuron_base.get_config()
  onevision_fields(c)
  c.model.id = "llava-hf/llava-onevision-qwen2-7b-ov-hf"
  c.data.source = "paper"
  c.stats.vision_tokens_per_domain = 100_000
  c.eval.n_per_domain = 1001
  return mmneuron_base.apply_arg(c, arg)
