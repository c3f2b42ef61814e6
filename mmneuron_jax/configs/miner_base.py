"""Shared MINER defaults (docs/ALGORITHMS.md, "MINER"); the experiment files override a few fields.

The model family is ONE field (`model.family`: qwen2_vl | qwen2_5_vl | qwen2_audio); everything else (chat template,
token ids, demo model) follows from it. `arg` is parsed like `mmneuron_jax/configs/mmneuron_base.py`:
`--config=miner_qwen2_vl_7b:select.ratio=0.01,select.strategy=adaptive`.
"""
import ml_collections

from mmneuron_jax.configs.mmneuron_base import apply_arg  # noqa: F401  (re-exported for the experiment files)

# The six MINER benchmarks (data/sources/miner_benchmarks.py) and which families can take them.
BENCHMARKS = {"qwen2_vl": ("text_vqa", "coco_caption", "mmlu", "msvd_qa"), "qwen2_audio": ("libri", "vocal_sound", "mmlu")}
BENCHMARKS["qwen2_5_vl"] = BENCHMARKS["qwen2_vl"]


def get_config():
  c = ml_collections.ConfigDict()
  c.task = "miner"
  c.seed = 0
  # True: statistics of other inputs in this run directory are deleted and recomputed (a resume
  # otherwise refuses, naming what differs). check_weights: refuse checkpoints with NaN/Inf weights.
  c.overwrite = False
  # 'scores' only, or the whole study ('scores', 'select', 'deactivate'), plus the optional
  # 'sweep', 'last_token' (Finding III) and 'semantics' (Finding IV) (tasks/miner/studies.py) and
  # 'atlas' (tasks/atlas/).
  c.stages = ("scores", "select", "deactivate")
  # attention: 'xla' | 'cudnn' (GPU flash attention, bf16) | 'fused' (XLA's kernel choice);
  # fp32_matmul: 'highest' | 'bf16_3x' | 'bf16_6x' | 'bf16_9x' (see nn/policy.py).
  c.model = ml_collections.ConfigDict(dict(family="qwen2_vl", path="", id="", dtype="float32", compute_dtype="",
                                           seed=0, attention="xla", fp32_matmul="highest", check_weights=True,
                                           demo_weights="random"))
  # Device mesh 'data,fsdp,tensor' sizes (one may be -1) or '2x1x4'; '' = no mesh (plain jit).
  c.mesh = "-1,1,1"
  # model.demo_weights (no model.path): 'random' = a tiny random-weight demo built in the workdir, 'trained' =
  # the family's trained demo (tasks/train_demo: bundled, or trained on first use).
  # source: 'demo' (bundled synthetic samples), 'skills' (the learnable set the trained demos answer,
  # data/synthetic/miner_skills.py, split data.split: 'train' | 'val') or 'benchmarks' (data/miner_benchmarks.load_dataset(name, path));
  # a dataset's path is data.paths.<name>, else <data.root>/<name>. n_per_dataset 0 = all (the authors' full sets).
  # Qwen2-VL processor: images within [min_pixels, max_pixels] (the authors' 256*28*28 / 1280*28*28; 0 = the
  # checkpoint's preprocessor_config.json); video_frames 'authors' = frames sized by qwen_vl_utils, then again
  # within those bounds (transformers 4.45-4.47 sized video frames with the image processor), 'once' = not again.
  c.data = ml_collections.ConfigDict(dict(source="demo", root="", datasets=("image_qa", "caption", "text_mc"),
                                          n_per_dataset=0, seed=0, split="val", min_pixels=256 * 28 * 28,
                                          max_pixels=1280 * 28 * 28, video_frames="authors"))
  c.data.paths = ml_collections.ConfigDict()
  # Stages 1-2: batched prefill with the in-scan MinerScores probe. grad: the sixth score (beyond the paper).
  # Prompts are padded to length_bucket * 2**k tokens, so a run compiles for a few lengths only.
  # prefetch: batches whose host preprocessing (processor, padding, modality masks, answer batches) runs
  # ahead on a thread while the device computes (0 = in line; io/prefetch.py); sums do not depend on it.
  # snapshots: sample counts at which each dataset's running sums are also saved (the authors'
  # ALL_SAVE_SAMPLE_NUMS; tasks/miner/snapshots.py), for the sample-count sweep; () = none.
  c.scores = ml_collections.ConfigDict(dict(batch_size=4, length_bucket=64, commit_every=10,
                                            flat_rtol=1e-5, grad=False, prefetch=2,
                                            snapshots=(10, 100, 500, 1000, 2500, 5000, 10000)))
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
  # Stage 'sweep' (tasks/miner/sweep.py): one-factor grids around select.* over the authors' lists, every
  # point's sets switched off while generating (deactivate=False: selection only) on n_per_dataset samples
  # (0 = deactivate.n_per_dataset); plus the sample-count convergence from scores.snapshots, where a dataset
  # with fewer samples than a count is left out ('skip', as the authors' aggregation) or taken whole ('full').
  # Cost: about 20 distinct sets, each one generation pass over n_per_dataset samples of every dataset.
  c.sweep = ml_collections.ConfigDict(dict(
      ratios=(0.001, 0.005, 0.01, 0.015, 0.02, 0.05, 0.1),
      weights=("prob", "mean", "max", "attn_k", "attn_q", "mean_max", "attn_k_attn_q", "default", "mean_max_attn_q",
               "equal"),
      strategies=("uniform", "adaptive", "LA_MU", "LU_MA", "random"), deactivate=True, n_per_dataset=0, short="skip"))
  # Stage 'last_token' (Finding III): conditions none | all | each (every selected modality) | <modality>;
  # n_per_dataset 0 = all samples.
  c.last_token = ml_collections.ConfigDict(dict(conditions=("none", "each", "all"), n_per_dataset=0, batch_size=4,
                                                length_bucket=64))
  # Stage 'semantics' (Finding IV): token states of the first n_per_dataset samples of each dataset (0 = all).
  c.semantics = ml_collections.ConfigDict(dict(n_per_dataset=8, batch_size=1, length_bucket=64))
  # Optional stage 'atlas' (tasks/atlas/): per neuron of the chosen set and modality the top-k tokens and a
  # histogram, as a static site <workdir>/atlas/index.html. max_samples_per_domain: per dataset (0 = all);
  # batch_size 0 = scores.batch_size; max_neurons 0 = the whole set. No switch-off effect for modalities.
  c.atlas = ml_collections.ConfigDict(dict(k=8, max_samples_per_domain=0, batch_size=0, max_neurons=0,
                                           effect_n_per_domain=0, commit_every=10, prefetch=2, lens_top=8))
  return c
