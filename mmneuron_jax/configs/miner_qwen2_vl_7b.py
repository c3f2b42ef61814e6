"""MINER on Qwen2-VL-7B-Instruct with the paper's benchmarks (TextVQA val, COCO Karpathy test, MMLU
5-shot, MSVD-QA video: frames at 1 fps, decoded with decord or PyAV, whichever is installed).
K = int(0.02 x 28 x 18944) = 10608.
The authors' protocol by default: every sample of every benchmark scored and evaluated, processor bounds
256*28*28..1280*28*28 pixels, the checkpoint's generation_config.json (top_k 1, repetition_penalty 1.05),
the checkpoint dtype (bf16; torch_dtype="auto"), MSVD-QA left out of the aggregate (M = 3: 3536 neurons per
modality). Subsets: --config.data.n_per_dataset=1000 --config.deactivate.n_per_dataset=500.
Images keep Qwen2-VL's dynamic resolution, so each new patch count compiles the forward once.

COMMAND: python -m mmneuron_jax --config=miner_qwen2_vl_7b --workdir=runs/miner_qwen2_vl_7b \
  --config.model.path=/data/Qwen2-VL-7B-Instruct --config.data.root=/data/miner
"""
from mmneuron_jax.configs import miner_base


def get_config(arg=None):
  c = miner_base.get_config()
  c.model.family = "qwen2_vl"
  c.model.id = "Qwen/Qwen2-VL-7B-Instruct"
  c.data.source = "benchmarks"
  c.data.datasets = miner_base.BENCHMARKS["qwen2_vl"]
  c.model.dtype = "auto"  # the checkpoint's torch_dtype: bfloat16, as the authors' torch_dtype="auto"
  c.data.n_per_dataset = 0  # all: TextVQA 5000, COCO 5000, MMLU 14042, MSVD-QA 13157
  c.scores.batch_size = 4
  c.scores.commit_every = 50  # each commit rewrites the [5, M, 28, 18944] float64 sums
  c.deactivate.n_per_dataset = 0
  return miner_base.apply_arg(c, arg)
