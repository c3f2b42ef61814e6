"""MINER sweeps from stored stage-2 sums (no scores recomputed): the authors' grids over the
selection ratio, the ten metric-weight presets and the five strategies, and the number of
samples behind the scores (the Jaccard of each sample-count snapshot's sets with the final sets).

The authors' lists (huang-kc/MINER config.yaml): ALL_SELECT_RATIO = `RATIOS`, the ten
ALL_IMPORTANCE_METRIC_WEIGHTS = `miner.WEIGHT_PRESETS`, ALL_SELECT_STRATEGIES = `miner.STRATEGIES`,
ALL_SAVE_SAMPLE_NUMS = `SAMPLE_COUNTS` (a dataset's running sum is saved when its sample count
reaches one of these; `ISM_aggregate.py --load_ISM_sample_num n` then aggregates the datasets that
have a snapshot at n and leaves out the others, which is `short='skip'` here).

Sums per dataset (the StatsStore totals of `tasks/miner_scores.py`, or a snapshot of them):
  {'score_sum': float[5, M, L, F], 'present': int[M], 'samples': int[1], optional 'grad_sum': float[M, L, F]}.
Pure numpy; shapes: M stored modalities, L layers, F neurons per layer.
"""
from __future__ import annotations

import numpy as np

from mmneuron_jax.analysis import miner

RATIOS = (0.001, 0.005, 0.01, 0.015, 0.02, 0.05, 0.1)
SAMPLE_COUNTS = (10, 100, 500, 1000, 2500, 5000, 10000)
AXES = ("ratio", "weights", "strategy")


def aggregate_sums(sums: dict) -> tuple:
  """{dataset: sums} -> (agg float64[5, M, L, F], agg_grad float64[M, L, F] or None, used bool[M]).

  Stage 3: each dataset's sum / its sample count (absent modality counted as zeros), then per
  modality the mean over the datasets where it occurs (`miner.aggregate`); used = occurs anywhere."""
  if not sums:
    raise ValueError("aggregate_sums needs at least one dataset")
  means, present, grads = {}, {}, {}
  for name, t in sums.items():
    n = int(np.asarray(t["samples"]).reshape(-1)[0])
    if n <= 0:
      raise ValueError(f"dataset {name!r}: 'samples' is {n}; nothing was counted")
    means[name] = np.asarray(t["score_sum"], np.float64) / n
    present[name] = np.asarray(t["present"]) > 0
    grads[name] = None if t.get("grad_sum") is None else np.asarray(t["grad_sum"], np.float64) / n
  agg = np.asarray(miner.aggregate(means, present), np.float64)
  agg_grad = None
  if all(g is not None for g in grads.values()):
    total = sum(np.where(present[d][:, None, None], grads[d], 0.0) for d in sums)
    count = sum(present[d].astype(np.int64) for d in sums)
    agg_grad = np.where(count[:, None, None] > 0, total / np.maximum(count, 1)[:, None, None], 0.0)
  used = np.any(np.stack(list(present.values())), axis=0)
  return agg, agg_grad, used


def combined(agg, agg_grad, weights, grad_weight: float = 0.0) -> np.ndarray:
  """float[5, M, L, F] (+ float[M, L, F]) -> float32[M, L, F] = sum_k w_k s_k (+ grad_weight * grad);
  weights: a `miner.WEIGHT_PRESETS` name or 5 numbers."""
  out = np.asarray(miner.combine(agg, weights), np.float64)
  if grad_weight:
    if agg_grad is None:
      raise ValueError("grad_weight is set but the sums hold no 'grad_sum' (scores.grad was off)")
    out = out + float(grad_weight) * np.asarray(agg_grad, np.float64)
  return out.astype(np.float32)


def sweep_points(base: dict, ratios=RATIOS, weights=tuple(miner.WEIGHT_PRESETS), strategies=miner.STRATEGIES) -> list:
  """One-factor grids around `base` {'ratio', 'weights' (preset name or 5 numbers), 'strategy'}:
  -> [{'axis', 'ratio', 'weights', 'strategy'}], the ratio grid, then the weight grid, then the
  strategy grid (each varies one field; the base point appears once per axis)."""
  points = []
  for axis, values in (("ratio", ratios), ("weights", weights), ("strategy", strategies)):
    for v in values:
      points.append({**{k: base[k] for k in ("ratio", "weights", "strategy")}, axis: v, "axis": axis})
  return points


def point_key(point: dict) -> str:
  """A stable name of a (ratio, weights, strategy) selection, e.g. '0.02|default|LA_MU'."""
  w = point["weights"]
  w = w if isinstance(w, str) else ",".join(f"{float(x):g}" for x in w)
  return f"{float(point['ratio']):g}|{w}|{point['strategy']}"


def jaccard(a, b) -> float | None:
  """|A & B| / |A | B| of two bool masks of one shape; None when both are empty."""
  a, b = np.asarray(a, bool), np.asarray(b, bool)
  if a.shape != b.shape:
    raise ValueError(f"jaccard: shapes {a.shape} and {b.shape} differ")
  union = int((a | b).sum())
  return None if union == 0 else int((a & b).sum()) / union


def set_jaccards(sel, names, final, final_names) -> dict:
  """Per modality Jaccard of bool[M, L, F] sets (names) with the final bool[M', L, F] sets
  (final_names), for every modality of either (None where one side lacks it or both are empty);
  'union': the Jaccard of the unions over modalities."""
  sel, final = np.asarray(sel, bool), np.asarray(final, bool)
  out = {}
  for m in dict.fromkeys(list(final_names) + list(names)):
    if m in names and m in final_names:
      out[m] = jaccard(sel[list(names).index(m)], final[list(final_names).index(m)])
    else:
      out[m] = None
  out["union"] = jaccard(sel.any(0), final.any(0))
  return out


def snapshot_sums(snapshots: dict, finals: dict, count: int, short: str = "skip") -> dict:
  """The per-dataset sums behind sample count `count`: {dataset: sums}.

  snapshots {dataset: {count: sums}}; finals {dataset: sums over all its samples}. A dataset with
  a snapshot at `count` gives it; one with fewer samples than `count`: short='skip' leaves it out
  (the authors' ISM_aggregate.py skips a missing ISM_<n>.npy), short='full' uses its final sums."""
  if short not in ("skip", "full"):
    raise ValueError(f"short={short!r}; expected 'skip' or 'full'")
  out = {}
  for d, final in finals.items():
    have = snapshots.get(d, {})
    if count in have:
      out[d] = have[count]
    elif int(np.asarray(final["samples"]).reshape(-1)[0]) < count:
      if short == "full":
        out[d] = final
    else:
      raise ValueError(f"dataset {d!r} has at least {count} samples but no snapshot at {count} "
                       "(config.scores.snapshots must list it before stage 2 runs)")
  return out


def convergence(snapshots: dict, finals: dict, final_sel, final_names, stored, counts, *, weights, ratio,
                strategy, seed, grad_weight=0.0, short="skip") -> list:
  """Sample-count sweep: for each count, the sets selected from the snapshot sums (same weights,
  ratio, strategy, seed) and their Jaccard with the final sets.

  stored: the M modality names of the sums' axis; final_sel bool[M', L, F] over final_names.
  -> [{'samples': count, 'datasets': [names used], 'modalities': [names], 'sizes': {m: n},
       'jaccard': {m: J or None, 'union': J}}]; a count no dataset reaches is left out."""
  rows = []
  for count in counts:
    sums = snapshot_sums(snapshots, finals, int(count), short)
    if not sums:
      continue
    agg, agg_grad, used = aggregate_sums(sums)
    names = [m for m, u in zip(stored, used) if u]
    scores = combined(agg, agg_grad, weights, grad_weight)[used]
    sel = miner.select(scores, ratio, strategy, seed=seed)
    rows.append({"samples": int(count), "datasets": list(sums), "modalities": names,
                 "sizes": {m: int(s.sum()) for m, s in zip(names, sel)},
                 "jaccard": set_jaccards(sel, names, final_sel, final_names)})
  return rows
