"""Where a MINER run gets its datasets and how it scores answers: the demo set, the learnable skills
set the trained demo models answer (`data/synthetic/miner_skills.py`, split `data.split`), or the six
benchmarks (`data/miner_benchmarks.load_dataset`, `data/miner_metrics.score` / `aggregate`).

  load(config, supported) -> ({dataset: [MinerSample]}, {dataset: [(id, reason)] skipped}, originals)
  score(source, name, prediction, record) -> {metric: value, 'primary': ...}
  summarize(source, name, per_sample) -> {metric: mean (or corpus value), 'n': ...}
"""
import os

import numpy as np
from absl import logging

from mmneuron_jax.data.metrics import miner_metrics
from mmneuron_jax.data.sources import miner_benchmarks, miner_samples
from mmneuron_jax.data.synthetic import miner_demo, miner_skills

# Sources scored with the demo metrics (`miner_demo.score`): the same dataset names and metrics.
DEMO_SOURCES = ("demo", "skills")


def dataset_path(config, name: str) -> str:
  """config.data.paths[name], else <config.data.root>/<name>."""
  paths = config.data.get("paths") or {}
  path = paths.get(name) if hasattr(paths, "get") else None
  if path:
    return path
  if not config.data.root:
    raise ValueError(f"config.data.paths.{name} and config.data.root are both empty: where is dataset {name!r}?")
  return os.path.join(config.data.root, name)


def load_records(config, name: str) -> tuple:
  """-> (records of one dataset, [(id, reason)] the loader skipped)."""
  n = int(config.data.n_per_dataset) or None
  if config.data.source == "demo":
    return miner_demo.demo_dataset(name, n or 16, seed=config.data.seed), []
  if config.data.source == "skills":
    split = config.data.get("split", "val")
    return miner_skills.skills_dataset(name, n or 16, split=split, seed=config.data.seed), []
  if config.data.source == "benchmarks":
    records = miner_benchmarks.load_dataset(name, dataset_path(config, name), n=n, seed=config.data.seed)
    return list(records), list(getattr(records, "bad", []))
  raise ValueError(f"config.data.source={config.data.source!r}; expected 'demo', 'skills' or 'benchmarks'")


def load(config, supported: tuple) -> tuple:
  """Every dataset of config.data.datasets as validated MinerSamples.

  supported: content modalities the model family takes (a sample with another one is skipped and
  reported). Returns ({name: [MinerSample]}, {name: [(id, reason)]}, {(name, id): original record})."""
  samples, bad, originals = {}, {}, {}
  for name in config.data.datasets:
    records, skipped = load_records(config, name)
    converted = []
    for r in records:
      s = miner_samples.as_sample(r, name)
      converted.append(s)
      originals[(name, s.id)] = r
    good, more = miner_samples.validate(converted, supported)
    for rid, why in more:
      logging.warning("%s: skipping sample %s: %s", name, rid, why)
    samples[name], bad[name] = good, list(skipped) + more
    if not good:
      raise ValueError(f"dataset {name!r} has no usable samples ({len(bad[name])} skipped; first: "
                       f"{bad[name][:1]})")
  return samples, bad, originals


def score(source: str, name: str, prediction: str, record) -> dict:
  """One prediction's metrics; 'primary' is the dataset's headline metric."""
  if source in DEMO_SOURCES:
    return miner_demo.score(name, prediction, record)
  out = miner_metrics.score(name, prediction, record)
  return out if isinstance(out, dict) else {"primary": float(out)}


def summarize(source: str, name: str, per_sample: list) -> dict:
  """Per-sample score dicts -> one summary dict (means of numeric fields and 'n'; the benchmark
  metrics add corpus-level values such as BLEU-4 / CIDEr-D / WER)."""
  if source not in DEMO_SOURCES:
    if hasattr(miner_metrics, "aggregate"):
      return {k: (float(v) if isinstance(v, (int, float, np.floating, np.integer)) else v)
              for k, v in miner_metrics.aggregate(name, per_sample).items()}
  keys = [k for k in (per_sample[0] if per_sample else {}) if isinstance(per_sample[0][k], (int, float))]
  out = {k: float(np.mean([p[k] for p in per_sample])) for k in keys}
  out["n"] = len(per_sample)
  return out
