"""Shared MINER defaults (REFERENCE.md, "MINER"); the experiment files override a few fields.

The model family is ONE field (`model.family`: qwen2_vl | qwen2_audio); everything else (chat template,
token ids, demo model) follows from it. `arg` is parsed like `mmneuron_jax/configs/mmneuron_base.py`:
`--config=miner_qwen2_vl_7b:select.ratio=0.01,select.strategy=adaptive`.
"""
import ml_collections

from mmneuron_jax.configs.mmneuron_base import apply_arg  # noqa: F401  (re-exported for the experiment files)

# The six MINER benchmarks (data/sources/miner_benchmarks.py) and which families can take them.
BENCHMARKS = {"qwen2_vl": ("text_vqa", "coco_caption", "mmlu", "msvd_qa"), "qwen2_audio": ("libri", "vocal_sound", "mmlu")}


def get_config():
  c = ml_collections.ConfigDict()
  c.task = "miner"
  c.seed = 0
  # 'scores' only, or the whole study ('scores', 'select', 'deactivate').
  c.stages = ("scores", "select", "deactivate")
  # attention: 'xla' | 'cudnn' (GPU flash attention, bf16) | 'fused' (XLA's kernel choice);
  # fp32_matmul: 'highest' | 'bf16_3x' | 'bf16_6x' | 'bf16_9x' (see nn/policy.py).
  c.model = ml_collections.ConfigDict(dict(family="qwen2_vl", path="", id="", dtype="float32", compute_dtype="",
                                           seed=0, attention="xla", fp32_matmul="highest"))
  # Device mesh 'data,fsdp,tensor' sizes (one may be -1) or '2x1x4'; '' = no mesh (plain jit).
  c.mesh = "-1,1,1"
  # source: 'demo' (bundled synthetic samples) or 'benchmarks' (data/miner_benchmarks.load_dataset(name, path));
  # a dataset's path is data.paths.<name>, else <data.root>/<name>. n_per_dataset 0 = all (the authors' full sets).
  # Qwen2-VL processor: images within [min_pixels, max_pixels] (the authors' 256*28*28 / 1280*28*28; 0 = the
  # checkpoint's preprocessor_config.json); video_frames 'authors' = frames sized by qwen_vl_utils, then again
  # within those bounds (transformers 4.45-4.47 sized video frames with the image processor), 'once' = not again.
  c.data = ml_collections.ConfigDict(dict(source="demo", root="", datasets=("image_qa", "caption", "text_mc"),
                                          n_per_dataset=0, seed=0, min_pixels=256 * 28 * 28,
                                          max_pixels=1280 * 28 * 28, video_frames="authors"))
  c.data.paths = ml_collections.ConfigDict()
  # Stages 1-2: batched prefill with the in-scan MinerScores probe. grad: the sixth score (beyond the paper).
  # Prompts are padded to length_bucket * 2**k tokens, so a run compiles for a few lengths only.
  # prefetch: batches whose host preprocessing (processor, padding, modality masks, answer batches) runs
  # ahead on a thread while the device computes (0 = in line; io/prefetch.py); sums do not depend on it.
  c.scores = ml_collections.ConfigDict(dict(batch_size=4, length_bucket=64, commit_every=10,
                                            flat_rtol=1e-5, grad=False, prefetch=2))
  # Stages 3-4: weights = a miner.WEIGHT_PRESETS name or 5 numbers over [prob, mean, max, attn_k, attn_q]
  # ('0,0.25,0.25,0.5,0' on the command line); grad_weight adds the gradient score. video=False: datasets with
  # video (MSVD-QA) are scored and evaluated but left out of the aggregate, so no video set is selected (the
  # authors' default aggregate: M = 3 on Qwen2-VL); True adds them (and the video modality).
  c.select = ml_collections.ConfigDict(dict(split="special_text_separate", weights="default", grad_weight=0.0,
                                            strategy="LA_MU", ratio=0.02, seed=2024, video=False))
  # Deactivation: conditions none | all | <modality> | complement | random; value 'zero' or 'min'.
  # generation 'checkpoint': the checkpoint's generation_config.json (HF generate's defaults, as the authors
  # ran); 'config': temperature (0 = greedy), top_k, top_p, repetition_penalty below (HF semantics).
  c.deactivate = ml_collections.ConfigDict(dict(conditions=("none", "all", "random"), value="zero",
                                                n_per_dataset=0, batch_size=4, length_bucket=32,
                                                max_new_tokens=128, generation="checkpoint", temperature=0.0,
                                                top_k=0, top_p=1.0, repetition_penalty=1.0))
  return c
