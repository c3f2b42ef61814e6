"""MINER on Qwen2-Audio-7B-Instruct with the paper's audio/text benchmarks (LibriSpeech test-clean,
VocalSound, MMLU 5-shot). K = int(0.02 x 32 x 11008) = 7045. The same study as
configs/miner_qwen2_vl_7b.py (full sets, batching, the checkpoint's generation_config.json: Qwen2-Audio's
samples, top_k 20, top_p 0.5, temperature 0.7, repetition_penalty 1.1, seeded here) with `model.family`
switched; float32, as the authors loaded it (no torch_dtype). Each scores commit rewrites the
[5, M, 32, 11008] float64 sums.

COMMAND: python -m mmneuron_jax --config=miner_qwen2_audio_7b --workdir=runs/miner_qwen2_audio_7b \
  --config.model.path=/data/Qwen2-Audio-7B-Instruct --config.data.root=/data/miner
"""
from mmneuron_jax.configs import miner_base, miner_qwen2_vl_7b


def get_config(arg=None):
  c = miner_qwen2_vl_7b.get_config()
  c.model.family = "qwen2_audio"
  c.model.id = "Qwen/Qwen2-Audio-7B-Instruct"
  c.model.dtype = "float32"  # the authors' from_pretrained had no torch_dtype: float32
  c.data.datasets = miner_base.BENCHMARKS["qwen2_audio"]
  return miner_base.apply_arg(c, arg)
