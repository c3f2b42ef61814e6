"""MINER on the embedded demo for audio: a tiny Qwen2-Audio (built deterministically through the HF
conversion path) and bundled synthetic samples (tone questions, text-only multiple choice). The
same study as mmneuron_jax/configs/miner_qwen2_vl_demo.py with `model.family` switched. ~1-2 min on a CPU.

COMMAND: python -m mmneuron_jax --config=miner_qwen2_audio_demo --workdir=runs/miner_qwen2_audio_demo
"""
from mmneuron_jax.configs import miner_qwen2_vl_demo


def get_config(arg=None):
  c = miner_qwen2_vl_demo.get_config()
  c.model.family = "qwen2_audio"
  c.model.id = "demo/tiny-qwen2-audio"
  c.data.datasets = ("audio_qa", "text_mc")
  c.deactivate.conditions = ("none", "all", "audio", "text", "complement", "random")
  return miner_qwen2_vl_demo.miner_base.apply_arg(c, arg)
