"""MINER stages 1-3 in a run: batched prefill forwards with the in-scan `MinerScores` probe, per-sample
scores summed per dataset into a resumable `StatsStore` (one store per dataset), then dataset means,
cross-dataset means per modality and the weighted combination.

Per dataset store (`<workdir>/stats/<dataset>/`), float64 / int64 totals:
  score_sum  [5, M, L, F]  sum over samples of the min-max-normalised METRICS scores
  grad_sum   [M, L, F]     (scores.grad) sum of the min-max-normalised -dNLL/dmask, per present modality
  present    [M]           samples in which the modality occurs
  tokens     [M]           tokens of each modality
  samples    [1]           samples counted
  layer_min  [N_batches, L] the minimum of each layer's activation tensor (valid tokens) per batch
                           (one row per batch, so a sum of one-hot rows stores it exactly)
M = the stored modalities (`stored_modalities`). The batch stream is planned on the host from sample
indices only, so a killed run resumes with bit-identical totals (nothing counted twice).
"""
import dataclasses
import hashlib
import json
import os
from typing import NamedTuple

import flax.struct
import jax.numpy as jnp
import numpy as np

from mmneuron_jax.analysis import finite, miner
from mmneuron_jax.analysis.importance import grad_importance
from mmneuron_jax.analysis.miner_probe import MinerScores
from mmneuron_jax.data.inputs.batching import chunks
from mmneuron_jax.io import fingerprint as fingerprints, paths
from mmneuron_jax.io.accumulate import Step, accumulate
from mmneuron_jax.io.stats_store import StatsStore
from mmneuron_jax.nn.probes import QKProbe
from mmneuron_jax.tasks.miner import snapshots as miner_snapshots
from mmneuron_jax.tasks.miner.inputs import pad_to


@flax.struct.dataclass
class MinerStatsProbe(QKProbe):
  """`MinerScores` plus the minimum of the layer's activation tensor over valid tokens and the number
  of its non-finite values (NaN / Inf, which the scores' comparisons would hide; `analysis.finite`).
  Call: acts float[B, T, F], q, k -> {'scores': float32[B, 5, M, F], 'min': float32[], 'nonfinite': int32[]}."""
  scores: MinerScores

  def __call__(self, acts, q=None, k=None):
    valid = self.scores.attention_mask != 0
    amin = jnp.min(jnp.where(valid[..., None], acts.astype(jnp.float32), jnp.inf))
    nonfinite = jnp.sum(valid[..., None] & ~jnp.isfinite(acts), dtype=jnp.int32)
    return {"scores": self.scores(acts, q, k), "min": amin, "nonfinite": nonfinite}


@dataclasses.dataclass(frozen=True)
class PlannedBatch:
  """Batch `number` (0-based) of one dataset: sample positions in that dataset's list."""
  number: int
  indices: tuple


def stored_modalities(split: str, producible: tuple) -> tuple:
  """Modalities of `miner.MODALITY_SPLITS[split]` the family's inputs can produce."""
  if split not in miner.MODALITY_SPLITS:
    raise ValueError(f"config.select.split={split!r}; expected one of {list(miner.MODALITY_SPLITS)}")
  return tuple(m for m in miner.MODALITY_SPLITS[split] if m in producible)


def plan(n_samples: int, batch_size: int, cuts=()) -> list:
  """Batches of `batch_size` sample positions in order; no batch straddles a count in `cuts`
  (the sample-count snapshots, `tasks/miner/snapshots.py`), so the batch stream is unchanged when
  no cut falls inside a batch."""
  bounds = sorted({int(c) for c in cuts if 0 < int(c) < n_samples}) + [n_samples]
  pieces, start = [], 0
  for stop in bounds:
    pieces += chunks(list(range(start, stop)), batch_size)
    start = stop
  return [PlannedBatch(i, tuple(c)) for i, c in enumerate(pieces)]


def snapshot_counts(cfg, n_samples: int) -> tuple:
  """config.scores.snapshots that this dataset reaches (count <= its sample count)."""
  return tuple(sorted({int(c) for c in (cfg.get("snapshots") or ()) if 0 < int(c) <= n_samples}))


def store_spec(modalities: tuple, layers: int, width: int, n_batches: int, grad: bool) -> dict:
  m = len(modalities)
  spec = {"score_sum": ((len(miner.METRICS), m, layers, width), "float64"), "present": ((m,), "int64"),
          "tokens": ((m,), "int64"), "samples": ((1,), "int64"), "layer_min": ((n_batches, layers), "float64")}
  if grad:
    spec["grad_sum"] = ((m, layers, width), "float64")
  return spec


def fingerprint(*parts) -> str:
  return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def normalised_grad(g, flat_rtol: float = miner.FLAT_RTOL) -> np.ndarray:
  """dNLL/dmask float[L, F] -> float32[L, F]: the importance -g (first-order loss increase when the
  neuron is removed) min-max normalised over each layer's F neurons, like the other scores."""
  return np.asarray(miner.minmax(-jnp.asarray(g, jnp.float32), flat_rtol))


class Prepared(NamedTuple):
  """A batch after host preprocessing: the padded prompt batch, its probe, the stored modalities'
  token masks bool[n, M, T] of the n real samples, and (scores.grad) each sample's padded
  (answer batch, answer mask), None without a reference answer."""
  number: int
  batch: dict
  probe: MinerStatsProbe
  masks: np.ndarray
  answers: tuple


def make_step_fn(model, params, inputs, samples, modalities, ids, cfg, n_batches: int, dataset: str = "") -> Step:
  """PlannedBatch -> {name: partial sums} of one dataset's batch (see the module docstring), as a
  `Step`: `prepare(planned) -> Prepared` builds the batches on the host, `run(prepared)` is the
  probed forward (and the gradients). Calling the Step does both."""
  idx = np.asarray([miner.MODALITY_INDEX[m] for m in modalities])
  layers = model.probe_modules["llm"][0]

  def prepare(planned: PlannedBatch) -> Prepared:
    chunk = [samples[i] for i in planned.indices]
    batch, _ = pad_to(inputs.batch(chunk, "right"), cfg.batch_size, cfg.length_bucket, inputs.pad_id)
    batch = model.prepare(batch)  # the family's host preprocessing here, not again inside model.apply
    full = MinerScores.from_batch(batch, flat_rtol=cfg.flat_rtol, special_ids=ids["special"],
                                  image_ids=ids["image"], video_ids=ids["video"], audio_ids=ids["audio"])
    scores_probe = full.replace(token_masks=full.token_masks[:, idx])  # only the stored modalities
    masks = np.asarray(scores_probe.token_masks)[:len(chunk)]
    answers = tuple(answer_batch(inputs, s, cfg) for s in chunk) if cfg.grad else ()
    return Prepared(planned.number, batch, MinerStatsProbe(scores_probe), masks, answers)

  def run(prepared: Prepared):
    n = len(prepared.masks)
    out = model.apply(params, prepared.batch, probe={"llm": prepared.probe})
    scores = np.asarray(out.probe["llm"]["scores"][:, :n], np.float64).sum(axis=1)   # [L, 5, M, F]
    finite.check_partial({"nonfinite/llm": np.asarray(out.probe["llm"]["nonfinite"]), "sum/llm": scores},
                         f"batch {prepared.number} (0-based) of dataset {dataset or '(unnamed)'!r}")
    present = prepared.masks.any(-1)                                    # [n, M]
    layer_min = np.zeros((n_batches, layers))
    layer_min[prepared.number] = np.asarray(out.probe["llm"]["min"], np.float64)
    partial = {"score_sum": np.transpose(scores, (1, 2, 0, 3)), "present": present.sum(0).astype(np.int64),
               "tokens": prepared.masks.sum((0, 2)).astype(np.int64), "samples": np.array([n], np.int64),
               "layer_min": layer_min}
    if cfg.grad:
      partial["grad_sum"] = grad_partial(model, params, prepared.answers, present, cfg)
    return partial

  return Step(prepare, run)


def answer_batch(inputs, sample, cfg):
  """One sample's prompt + first reference answer padded like the prompts -> (batch, answer_mask
  bool[1, T]); None without a reference answer."""
  if not sample.answers:
    return None
  batch, extra = inputs.answer_batch([sample], [sample.answers[0]])
  batch, extra = pad_to(batch, 1, cfg.length_bucket, inputs.pad_id, extra={"answer": extra})
  return batch, extra["answer"]


def grad_partial(model, params, answers, present, cfg) -> np.ndarray:
  """Sum over the samples of the normalised gradient importance, for each present modality
  (float64[M, L, F]); one sample at a time (the mask gradient sums over the batch). answers: each
  sample's `answer_batch`; samples without a reference answer contribute zeros."""
  layers, width = model.probe_modules["llm"]
  total = np.zeros((present.shape[1], layers, width))
  for answer, p in zip(answers, present):
    if answer is None:
      continue
    g = grad_importance(model, params, answer[0], answer[1], modules=("llm",))["llm"]
    total += p[:, None, None] * normalised_grad(g, cfg.flat_rtol)[None].astype(np.float64)
  return total


# Bump when the scores' definition or accumulation changes: stores of another version refuse to resume.
SCORES_VERSION = 1


def _content(v):
  """A value's content for the fingerprint: bytes, arrays, images and existing files by digest."""
  if isinstance(v, bytes):
    return fingerprints.digest(v)
  if isinstance(v, np.ndarray):
    return [list(v.shape), v.dtype.str, fingerprints.digest(np.ascontiguousarray(v).tobytes())]
  if hasattr(v, "tobytes") and hasattr(v, "size") and hasattr(v, "mode"):  # a PIL image
    return [list(v.size), v.mode, fingerprints.digest(v.tobytes())]
  if isinstance(v, str) and len(v) < 4096 and os.path.isfile(v):
    return [v, fingerprints.checkpoint_digest(v)]
  if isinstance(v, (list, tuple)):
    return [_content(x) for x in v]
  if isinstance(v, dict):
    return {str(k): _content(x) for k, x in sorted(v.items(), key=lambda kv: str(kv[0]))}
  return v if isinstance(v, (int, float, bool, type(None))) else str(v)


def _sample_content(s) -> list:
  return [[f.name, _content(getattr(s, f.name))] for f in dataclasses.fields(s)]


def fingerprint_fields(checkpoint, model_config, name, samples, inputs, cfg, modalities, ids, batches) -> dict:
  """{field: digest} of everything one dataset's sums depend on (io/fingerprint.py)."""
  m = model_config
  return {"checkpoint": fingerprints.checkpoint_digest(checkpoint), "model.dtype": m.dtype,
          "model.compute_dtype": m.get("compute_dtype", ""), "model.attention": m.get("attention", "xla"),
          "model.fp32_matmul": m.get("fp32_matmul", "highest"), "dataset": name,
          "records": fingerprints.digest([_sample_content(s) for s in samples]),
          "processor": fingerprints.digest(inputs.settings()),
          "modalities": fingerprints.digest(list(modalities)),
          "token ids": fingerprints.digest({k: list(v) for k, v in ids.items()}),
          "scores": fingerprints.digest([cfg.batch_size, cfg.length_bucket, cfg.flat_rtol, bool(cfg.grad),
                                         cfg.get("grad_len", None)]),
          "batch plan": fingerprints.digest([[b.number, list(b.indices)] for b in batches]),
          "scores.snapshots": fingerprints.digest(list(snapshot_counts(cfg, len(samples)))),
          "statistic version": str(SCORES_VERSION)}


def open_store(workdir, model, inputs, name, samples, modalities, ids, cfg, checkpoint, model_config,
               overwrite=False) -> StatsStore:
  """One dataset's store, resumed only when its fingerprint fields match (else FingerprintMismatch)."""
  batches = plan(len(samples), cfg.batch_size, snapshot_counts(cfg, len(samples)))
  layers, width = model.probe_modules["llm"]
  spec = store_spec(modalities, layers, width, len(batches), cfg.grad)
  fields = fingerprint_fields(checkpoint, model_config, name, samples, inputs, cfg, modalities, ids, batches)
  return StatsStore.open_or_create(paths.join(workdir, "stats", name), spec, fields, overwrite=overwrite)


def run_dataset(store, model, params, inputs, name, samples, modalities, ids, cfg) -> dict:
  """Accumulate one dataset's stage-2 sums into its store (`open_store`, resumable) -> its totals."""
  snaps = snapshot_counts(cfg, len(samples))
  batches = plan(len(samples), cfg.batch_size, snaps)
  fp, workdir = store.fingerprint, paths.dirname(paths.dirname(store.path))  # <workdir>/stats/<name>
  step = make_step_fn(model, params, inputs, samples, modalities, ids, cfg, len(batches), dataset=name)
  stop = miner_snapshots.writer(workdir, name, snaps, fp) if snaps else None
  return accumulate(store, ((b.number + 1, b) for b in batches), step.run, commit_every=cfg.commit_every,
                    total=len(batches), desc=f"MINER scores {name} (batches)", prepare=step.prepare,
                    prefetch=cfg.prefetch, stop=stop)


# ----------------------------------------------------------------------------- stage 3

def dataset_means(totals: dict) -> dict:
  """{dataset: store totals} -> {dataset: {'scores': float64[5, M, L, F] mean over samples (absent
  modality counted as zeros), 'grad': float64[M, L, F] or None, 'present': bool[M]}}."""
  out = {}
  for name, t in totals.items():
    n = max(int(t["samples"][0]), 1)
    out[name] = {"scores": t["score_sum"] / n, "grad": t["grad_sum"] / n if "grad_sum" in t else None,
                 "present": t["present"] > 0}
  return out


def cross_dataset_mean(means: dict, key: str) -> np.ndarray:
  """For each modality, the mean of means[d][key] (float[..., M, L, F]) over the datasets where it
  occurs (zeros where it never does) -> float64 of the same shape."""
  total, count = None, None
  for m in means.values():
    x = np.asarray(m[key], np.float64)
    p = np.asarray(m["present"], bool)
    if total is None:
      total, count = np.zeros_like(x), np.zeros(p.shape, np.int64)
    total += np.where(p[:, None, None], x, 0.0)
    count += p
  return np.where(count[:, None, None] > 0, total / np.maximum(count, 1)[:, None, None], 0.0)


def layer_minimum(totals: dict) -> np.ndarray:
  """float64[L]: each layer's activation-tensor minimum over every stage-2 batch of every dataset."""
  return np.min(np.concatenate([t["layer_min"] for t in totals.values()]), axis=0)


def parse_weights(weights):
  """config.select.weights: a `miner.WEIGHT_PRESETS` name, '0,.25,.25,.5,0', or 5 numbers -> float64[5]."""
  if isinstance(weights, str) and weights not in miner.WEIGHT_PRESETS:
    try:
      weights = [float(w) for w in weights.replace(",", " ").split()]
    except ValueError:
      raise ValueError(f"config.select.weights={weights!r}: not a preset ({list(miner.WEIGHT_PRESETS)}) "
                       "nor 5 numbers") from None
  return miner.metric_weights(weights if isinstance(weights, str) else list(weights))


def combined_scores(agg_scores, agg_grad, weights, grad_weight: float) -> np.ndarray:
  """float[5, M, L, F] (+ float[M, L, F] grad) -> float32[M, L, F] = sum_k w_k s_k + grad_weight * grad."""
  out = miner.combine(agg_scores, parse_weights(weights)).astype(np.float64)
  if grad_weight:
    if agg_grad is None:
      raise ValueError("config.select.grad_weight is set but the grad score was not computed (config.scores.grad)")
    out = out + float(grad_weight) * np.asarray(agg_grad, np.float64)
  return out.astype(np.float32)
