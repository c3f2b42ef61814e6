"""Train the tiny Qwen2-Audio demo model on the learnable synthetic MINER set (data/synthetic/miner_skills.py:
sounds, beeps and tones to a word; text-only multiple choice) and write it as a HF checkpoint.
See mmneuron_jax/configs/train_demo_qwen2_vl.py; the same recipe fields, family 'qwen2_audio'.

COMMAND: python -m mmneuron_jax --config=train_demo_qwen2_audio --workdir=runs/train_demo_qwen2_audio --config.out=mmneuron_jax/data/synthetic/demo_assets/trained_qwen2_audio
"""
from mmneuron_jax.configs import train_demo_qwen2_vl


def get_config(arg=None):
  return train_demo_qwen2_vl.get_config(arg, family="qwen2_audio")
