"""MINER on the embedded demo for audio: a tiny Qwen2-Audio trained to answer a learnable synthetic set
(data/synthetic/miner_skills.py: which sound, how many beeps, high or low tone; text-only multiple choice).
The trained checkpoint is bundled (mmneuron_jax/configs/train_demo_qwen2_audio.py rewrites it). The same
study as mmneuron_jax/configs/miner_qwen2_vl_demo.py with `model.family` switched. Minutes on a CPU.

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
