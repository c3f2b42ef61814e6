"""Shared MMNeuron defaults (docs/ALGORITHMS.md); the experiment files override a few fields.

`arg` is parsed as `key=value,key2=value2` into dotted config fields, e.g.
`--config=llava_next_7b:stats.batch_size=8,model.dtype=bfloat16` (configs/_overrides.py;
`--config.stats.batch_size=8` flags do the same).
"""
import ml_collections

from mmneuron_jax.configs import _overrides as overrides

DOMAINS = ("auto-driving", "medical", "remote-sensing", "common-scenes", "documents")


def get_config():
  c = ml_collections.ConfigDict()
  c.task = "mmneuron"
  c.seed = 0
  # True: statistics of other inputs in this run directory are deleted and recomputed (a resume
  # otherwise refuses, naming what differs). check_weights: refuse checkpoints with NaN/Inf weights.
  c.overwrite = False
  # Device mesh 'data,fsdp,tensor' sizes (one may be -1) or '2x1x4'; '' = no mesh (plain jit).
  # `sharding.mesh_from_config(c)`; every analysis step then runs sharded on it (mmneuron_jax/sharding/).
  c.mesh = "-1,1,1"
  # 'stats' only, or the whole study ('stats', 'select', 'eval', 'lens'; optional 'tuned_lens', 'atlas').
  c.stages = ("stats", "select", "eval", "lens")
  # demo: the family of the embedded tiny checkpoint built when `path` is empty (llava_next, instructblip).
  # attention: 'xla' | 'cudnn' (GPU flash attention, bf16) | 'fused' (XLA's kernel choice);
  # fp32_matmul: 'highest' | 'bf16_3x' | 'bf16_6x' | 'bf16_9x' (see nn/policy.py).
  c.model = ml_collections.ConfigDict(dict(path="", id="", dtype="float32", compute_dtype="", seed=0,
                                           demo="llava_next", attention="xla", fp32_matmul="highest",
                                           check_weights=True))
  # order: 'authors' (the authors' sample order per dataset, data/sources/datasets.py) | 'sha256' (seeded by `seed`).
  # Source 'records': a '{split}' in `path` names one file per split (stats/eval/lens `split` below).
  c.data = ml_collections.ConfigDict(dict(source="demo", path="", image_root="", n_per_domain=0, seed=0,
                                          domains=tuple(DOMAINS), order="authors"))
  # positions: 'all' (paper: image, text and BOS tokens) or 'image'. prefetch: batches whose host
  # preprocessing (images, processor, padding, token groups) runs ahead on a thread while the device
  # computes (0 = in line; io/prefetch.py); the totals do not depend on it.
  # Each stage reads its own split (the authors': statistics and lens on train, evaluation on val;
  # PMC-VQA has no val split: its val.csv when there is one, else test.csv).
  c.stats = ml_collections.ConfigDict(dict(split="train", positions="all", max_samples_per_domain=0,
                                           vision_tokens_per_domain=100_000, batch_size=8, commit_every=10,
                                           prefetch=2))
  c.dape = ml_collections.ConfigDict(dict(top_rate=0.01, filter_rate=0.95, bar_ratio=0.95))
  # template / style: data/inputs/prompts.py ('' = the model family's default, tasks/common/families.py; 'authors').
  # max_length: prompt + answer tokens, the image counted as one token (the authors' HF generate
  # max_length=512); max_new_tokens > 0 replaces it with a fixed answer budget.
  # metric: the 'primary' column: 'authors' (their per-domain metrics) | 'standard' (data/metrics/vqa_metrics.py).
  c.eval = ml_collections.ConfigDict(dict(split="val", n_per_domain=1001, batch_size=8, max_length=512,
                                          max_new_tokens=0, temperature=0.0, template="vicuna_v1", style="",
                                          metric="authors"))
  # Logit lens (the authors' logit_len.py): train split, the full evaluation body with no chat template
  # (prompt 'authors'; 'stats' = "<image>\n{question}"), every position (positions 'all'; or 'image').
  # n_per_domain: 0 = the whole split, as the authors ran it; a positive number caps it per domain.
  c.lens = ml_collections.ConfigDict(dict(split="train", n_per_domain=0, top_k=10, prompt="authors",
                                          positions="all"))
  # Optional stage 'tuned_lens' (add it to `stages`; beyond the papers, tasks/readouts/): translators
  # trained on n_per_domain samples per domain, compared with the logit lens on held-out ones.
  c.tuned_lens = ml_collections.ConfigDict(dict(n_per_domain=8, positions_per_sample=24, steps=200, lr=2e-3,
                                                batch_size=256, top_k=10, name="tuned_lens", load="",
                                                heldout_frac=0.25))
  # Optional stage 'atlas' (add it to `stages`; tasks/atlas/): per selected neuron and domain the top-k
  # activating tokens and a histogram, as a static site <workdir>/atlas/index.html. max_samples_per_domain
  # 0 = the statistics records; batch_size 0 = stats.batch_size; max_neurons 0 = whole sets (per module);
  # effect_n_per_domain: held-out records per domain for the switch-off effect (0 = skip).
  c.atlas = ml_collections.ConfigDict(dict(k=8, max_samples_per_domain=0, batch_size=0, max_neurons=0,
                                           effect_n_per_domain=4, commit_every=10, prefetch=2, lens_top=8))
  # Other finished MMNeuron run directories to put side by side with this one in report.md.
  c.compare_with = ()
  return c


def apply_arg(c, arg):
  """Apply `a.b=v,c.d=w` overrides (`configs/_overrides.py`): a comma starts a new override only
  before `key=`, so tuple fields take comma lists (`data.domains=medical,documents`); values are
  parsed to the field's type, quotes are stripped, and unknown keys or unparsable values refuse."""
  return overrides.apply(c, arg)
