"""MINER on Qwen2.5-VL-7B-Instruct with the Qwen2-VL study's benchmarks (TextVQA val, COCO Karpathy
test, MMLU 5-shot, MSVD-QA video: frames at 1 fps, so second_per_grid_ts = 2 s per temporal patch).
K = int(0.02 x 28 x 18944) = 10608, the decoder's size being Qwen2-VL-7B's. The same study as
configs/miner_qwen2_vl_7b.py (full sets, processor bounds 256*28*28..1280*28*28, the checkpoint's
generation_config.json, bf16) with `model.family` switched.

COMMAND: python -m mmneuron_jax --config=miner_qwen2_5_vl_7b --workdir=runs/miner_qwen2_5_vl_7b \
  --config.model.path=/data/Qwen2.5-VL-7B-Instruct --config.data.root=/data/miner
"""
from mmneuron_jax.configs import miner_base, miner_qwen2_vl_7b


def get_config(arg=None):
  c = miner_qwen2_vl_7b.get_config()
  c.model.family = "qwen2_5_vl"
  c.model.id = "Qwen/Qwen2.5-VL-7B-Instruct"
  c.data.datasets = miner_base.BENCHMARKS["qwen2_5_vl"]
  return miner_base.apply_arg(c, arg)
