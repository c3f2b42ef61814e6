"""Neuron sets side by side across models and methods (MMNeuron domain sets, MINER modality sets):
where in depth the neurons sit, and how much sets overlap.

Relative depth: layer l of an L-layer module covers the interval [l / L, (l + 1) / L); a layer's
neurons are spread uniformly over it, so a histogram over depth bins does not depend on how the
layers fall into the bins (a set spread evenly over the layers gives a flat histogram for any L).

Overlap: Jaccard |A & B| / |A | B| (0 when both are empty), over all layers or per layer. Sets of
different models / modules can only be compared by depth; `cross_jaccard` needs equal (L, F).
Shapes: G groups, L layers, F neurons per layer, K depth bins.
"""
import numpy as np


def _as_mask(mask) -> np.ndarray:
  m = np.asarray(getattr(mask, "mask", mask))
  if m.dtype != bool:
    raise ValueError(f"neuron set mask must be bool; got {m.dtype}")
  if m.ndim == 2:
    m = m[None]
  if m.ndim != 3:
    raise ValueError(f"neuron set mask must be bool[G, L, F] or bool[L, F]; got shape {m.shape}")
  return m


def depth_weights(layers: int, bins: int) -> np.ndarray:
  """float64[L, K]: the share of layer l's depth interval [l/L, (l+1)/L) that falls in bin k
  ([k/K, (k+1)/K)); each row sums to 1."""
  if layers < 1 or bins < 1:
    raise ValueError(f"layers and bins must be >= 1; got {layers}, {bins}")
  lo_l, hi_l = np.arange(layers)[:, None] / layers, (np.arange(layers)[:, None] + 1) / layers
  lo_k, hi_k = np.arange(bins)[None] / bins, (np.arange(bins)[None] + 1) / bins
  overlap = np.clip(np.minimum(hi_l, hi_k) - np.maximum(lo_l, lo_k), 0.0, None)
  return overlap * layers


def depth_histogram(mask, bins: int = 10, normalize: bool = True) -> np.ndarray:
  """bool[G, L, F] (or a NeuronSet, or bool[L, F]) -> float64[G, K]: neurons per relative-depth bin;
  normalize=True gives each group's fraction (rows sum to 1; an empty group stays all zeros)."""
  m = _as_mask(mask)
  counts = m.sum(-1).astype(np.float64) @ depth_weights(m.shape[1], bins)      # [G, K]
  if not normalize:
    return counts
  total = counts.sum(-1, keepdims=True)
  return np.where(total > 0, counts / np.where(total > 0, total, 1.0), 0.0)


def mean_depth(mask) -> np.ndarray:
  """bool[G, L, F] (or a NeuronSet, or bool[L, F]) -> float64[G]: the mean relative depth of each
  group's neurons (layer l at the centre of its interval, (l + 0.5) / L); NaN for an empty group."""
  m = _as_mask(mask)
  counts = m.sum(-1).astype(np.float64)  # [G, L]
  centres = (np.arange(m.shape[1]) + 0.5) / m.shape[1]
  total = counts.sum(-1)
  return np.where(total > 0, counts @ centres / np.where(total > 0, total, 1.0), np.nan)


def deactivation_deltas(rows: list, metric: str = "primary") -> dict:
  """Deactivation rows of a finished run (MMNeuron: 'domain', 'condition', 'control'; MINER: 'dataset',
  'condition') -> {(condition, control): float mean over domains / datasets of metric - metric(none)}.

  The baseline of each domain is its 'none' row (control 'dape' where rows carry a control); rows
  without the metric, or whose domain has no baseline, are left out. control is '' for MINER rows."""
  key = lambda r: r.get("domain", r.get("dataset"))
  base = {key(r): r[metric] for r in rows
          if r.get("condition") == "none" and r.get("control", "dape") == "dape" and metric in r}
  per = {}
  for r in rows:
    if r.get("condition") == "none" or metric not in r or key(r) not in base:
      continue
    per.setdefault((r["condition"], r.get("control", "")), []).append(float(r[metric]) - float(base[key(r)]))
  return {k: float(np.mean(v)) for k, v in per.items()}


def jaccard(a, b) -> float:
  """bool arrays of one shape -> |a & b| / |a | b| (0.0 when both are empty)."""
  a, b = np.asarray(a, bool), np.asarray(b, bool)
  if a.shape != b.shape:
    raise ValueError(f"jaccard: shapes differ {a.shape} vs {b.shape}")
  union = np.logical_or(a, b).sum()
  return float(np.logical_and(a, b).sum() / union) if union else 0.0


def jaccard_per_layer(a, b) -> np.ndarray:
  """bool[L, F], bool[L, F] -> float64[L] Jaccard of each layer (0 where both are empty)."""
  a, b = np.asarray(a, bool), np.asarray(b, bool)
  if a.shape != b.shape or a.ndim != 2:
    raise ValueError(f"jaccard_per_layer needs two bool[L, F] of one shape; got {a.shape} and {b.shape}")
  inter, union = np.logical_and(a, b).sum(-1), np.logical_or(a, b).sum(-1)
  return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def cross_jaccard(a, b, per_layer: bool = False) -> np.ndarray:
  """bool[G1, L, F], bool[G2, L, F] (same module shape) -> float64[G1, G2] (or [G1, G2, L] per layer)."""
  a, b = _as_mask(a), _as_mask(b)
  if a.shape[1:] != b.shape[1:]:
    raise ValueError(f"cross_jaccard needs sets over the same [L, F]; got {a.shape[1:]} and {b.shape[1:]}")
  ai, bi = a.astype(np.int64), b.astype(np.int64)
  if per_layer:
    inter = np.einsum("alf,blf->abl", ai, bi)
    union = ai.sum(-1)[:, None] + bi.sum(-1)[None] - inter
  else:
    inter = np.einsum("alf,blf->ab", ai, bi)
    union = ai.sum((1, 2))[:, None] + bi.sum((1, 2))[None] - inter
  return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def pairwise_jaccard(mask, per_layer: bool = False) -> np.ndarray:
  """Within one set: bool[G, L, F] -> float64[G, G] (or [G, G, L])."""
  m = _as_mask(mask)
  return cross_jaccard(m, m, per_layer)


def compatible(a, b) -> bool:
  """Two NeuronSets can be overlapped neuron by neuron: same model id, module, layers and width."""
  return (a.model_id, a.module, a.layers, a.width) == (b.model_id, b.module, b.layers, b.width)
