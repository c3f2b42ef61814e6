"""MINER on Qwen2-VL-7B-Instruct with the paper's benchmarks (TextVQA val, COCO Karpathy test, MMLU
5-shot, MSVD-QA video: frames at 1 fps, decoded with decord or PyAV, whichever is installed).
K = int(0.02 x 28 x 18944) = 10608.
Images keep Qwen2-VL's dynamic resolution, so each new patch count compiles the forward once.

COMMAND: python launch/main.py --config=configs/miner_qwen2_vl_7b.py --workdir=runs/miner_qwen2_vl_7b \
  --config.model.path=/data/Qwen2-VL-7B-Instruct --config.data.root=/data/miner
"""
from configs import miner_base


def get_config(arg=None):
  c = miner_base.get_config()
  c.model.family = "qwen2_vl"
  c.model.id = "Qwen/Qwen2-VL-7B-Instruct"
  c.data.source = "benchmarks"
  c.data.datasets = miner_base.BENCHMARKS["qwen2_vl"]
  c.data.n_per_dataset = 1000
  c.scores.batch_size = 4
  c.scores.commit_every = 50  # each commit rewrites the [5, M, 28, 18944] float64 sums
  c.deactivate.n_per_dataset = 500
  return miner_base.apply_arg(c, arg)
