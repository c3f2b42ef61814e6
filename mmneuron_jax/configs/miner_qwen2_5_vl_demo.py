"""MINER on the embedded demo for Qwen2.5-VL: a tiny random-weight Qwen2.5-VL (window-attention ViT;
built deterministically through the HF conversion path in the workdir) on the fixed demo samples
(image QA, captions, text-only multiple choice, 4-frame video QA): the study of
mmneuron_jax/configs/miner_qwen2_vl_demo.py with `model.family` switched and its untrained setting
(`miner_qwen2_vl_demo.random_demo`). No trained Qwen2.5-VL demo is bundled: the report shows that the
pipeline runs on the family, not a finding. ~2 min on a CPU.

COMMAND: python -m mmneuron_jax --config=miner_qwen2_5_vl_demo --workdir=runs/miner_qwen2_5_vl_demo
"""
from mmneuron_jax.configs import miner_qwen2_vl_demo


def get_config(arg=None):
  c = miner_qwen2_vl_demo.random_demo(miner_qwen2_vl_demo.get_config())
  c.model.family = "qwen2_5_vl"
  c.model.id = "demo/tiny-qwen2.5-vl"
  return miner_qwen2_vl_demo.miner_base.apply_arg(c, arg)
