"""MINER: modality-specific neurons in four stages (see REFERENCE.md, "MINER").

1. Modality separation (`token_modality_masks`): every prefill position of the *expanded*
   LLM sequence gets modalities by token id, in the fixed order `MODALITIES`
   ("text", "special", "special_text", "image", "video", "audio", "prompt").
   special_text = special | text, prompt = every valid token; padding belongs to none.
2. Importance (`importance`): five scores per (modality m with token set I, layer l, neuron j),
   in the order `METRICS` = [prob, mean, max, attn_k, attn_q], for one sample:
     prob = mean_{t in I} [a_t > 0];  mean = mean_{t in I} a_t;  max = max_{t in I} a_t;
     S = A[I, I] with A the head-averaged, unmasked, post-RoPE attention probabilities;
     E = exp(S)  (a second softmax over probabilities, on purpose, as the authors do);
     attn_k: w_i = sum_j E_ij / sum_i' E_i'j   (column-normalise E, then sum each row);
     attn_q: w_j = sum_i E_ij / sum_j' E_ij'   (row-normalise E, then sum each column);
     attn_* = sum_{t in I} w_t a_t.
   Each score vector is then min-max normalised over the F neurons of the layer:
   (x - min) / (max - min). Our definition where the authors divide by zero (NaN): a vector
   whose range is <= flat_rtol * max(|min|, |max|) (default 1e-5: all equal up to float32
   summation noise, which reaches ~2e-6 relative over a few thousand tokens when XLA reduces
   different neurons in different orders) normalises to all zeros; flat_rtol=0 means bit-equal. An absent modality (empty I) gets zeros for all five.
   Everything is done with masks (no data-dependent shapes), so it jits; E is computed as a
   numerically stable masked softmax (subtracting the column / row max), which is the same
   quantity as the literal formula.
3. Aggregation (`dataset_mean`, `aggregate`, `combine`): mean over the samples of a dataset
   (absent modality counts as zeros), then per modality the mean over the datasets in which it
   occurs; combine the five metrics with weights (`WEIGHT_PRESETS`, default [0, .25, .25, .5, 0]).
4. Selection (`select`), K = int(ratio * L * F): strategies LA_MU (default), LU_MA, adaptive,
   uniform, random (see `select`). Ties among equal scores go to the lowest flat index first
   (a stable sort; the authors' torch.topk leaves this unspecified).
   `deactivation_masks` turns a selection into (scale, offset) with new_act = act*scale + offset;
   `overlap_table` counts pairwise per-layer overlaps; `combination_overlap` the overlap of every
   modality combination per layer (the authors' analysis table).

Shapes: L layers, T tokens, F neurons per layer, M modalities, B samples, H heads.
"""
from __future__ import annotations

import numbers
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

MODALITIES = ("text", "special", "special_text", "image", "video", "audio", "prompt")
MODALITY_INDEX = {name: i for i, name in enumerate(MODALITIES)}
METRICS = ("prob", "mean", "max", "attn_k", "attn_q")
STRATEGIES = ("LA_MU", "LU_MA", "adaptive", "uniform", "random")

# The id sets of MINER stage 1 (a family module's `TOKEN_IDS` holds its model's, e.g.
# `models.mllm.qwen2_vl.TOKEN_IDS`).
ID_SETS = ("special_ids", "image_ids", "video_ids", "audio_ids")

# The ten metric-weight combinations over [prob, mean, max, attn_k, attn_q] that the MINER
# code sweeps (its config lists them unnamed; the names here are ours).
WEIGHT_PRESETS = {
    "prob": (1.0, 0.0, 0.0, 0.0, 0.0),
    "mean": (0.0, 1.0, 0.0, 0.0, 0.0),
    "max": (0.0, 0.0, 1.0, 0.0, 0.0),
    "attn_k": (0.0, 0.0, 0.0, 1.0, 0.0),
    "attn_q": (0.0, 0.0, 0.0, 0.0, 1.0),
    "mean_max": (0.0, 0.5, 0.5, 0.0, 0.0),
    "attn_k_attn_q": (0.0, 0.0, 0.0, 0.5, 0.5),
    "default": (0.0, 0.25, 0.25, 0.5, 0.0),  # mean + max + attn_k, the paper's choice
    "mean_max_attn_q": (0.0, 0.25, 0.25, 0.0, 0.5),
    "equal": (0.2, 0.2, 0.2, 0.2, 0.2),
}

# Modality subsets the MINER code selects over (M in floor(K/M) is the size of the subset
# actually used, after dropping modalities that never occur).
MODALITY_SPLITS = {
    "prompt": ("prompt",),
    "special_text_as_one": ("special_text", "image", "video", "audio"),
    "special_text_separate": ("text", "special", "image", "video", "audio"),
}

FLAT_RTOL = 1e-5  # relative range below which a score vector counts as all-equal (-> zeros)
_HIGHEST = jax.lax.Precision.HIGHEST


# ============================================================================ stage 1

def _isin(ids, values: Sequence[int]):
  """int[...] ids, static tuple of ids -> bool[...]."""
  out = jnp.zeros(ids.shape, bool)
  for v in values:
    out = out | (ids == v)
  return out


def _id_tuple(name, value):
  if isinstance(value, numbers.Integral):
    value = (value,)
  try:
    out = tuple(int(v) for v in value)
  except TypeError as e:
    raise ValueError(f"{name} must be an int or a sequence of ints; got {value!r}") from e
  return out


def token_modality_masks(input_ids, token_ids: Mapping | None, attention_mask=None, *,
                         special_ids=None, image_ids=None, video_ids=None, audio_ids=None):
  """Stage 1: int[T] or int[B, T] expanded LLM input ids -> bool[M=7, T] or bool[M=7, B, T].

  Rows follow `MODALITIES`. `token_ids`: {'special_ids', 'image_ids', 'video_ids', 'audio_ids'}
  (a family module's `TOKEN_IDS`, or a checkpoint's own ids); any of the four id sets can be
  overridden by keyword (token_ids=None requires all four). Positions with
  attention_mask == 0 (padding) belong to no modality; text = valid and in no other id set.
  The input must be the expanded sequence (one image / video / audio id per placeholder
  position, e.g. Qwen2-Audio's whole audio span), prefill only. Jit-able (the id sets are static).
  """
  if token_ids is None:
    token_ids = {}
  if not isinstance(token_ids, Mapping) or set(token_ids) - set(ID_SETS):
    raise ValueError(f"token_ids must be a mapping with keys from {ID_SETS} (a family module's TOKEN_IDS) or "
                     f"None; got {token_ids!r}")
  base = {name[:-4]: token_ids.get(name) for name in ID_SETS}
  for name, override in (("special", special_ids), ("image", image_ids), ("video", video_ids),
                         ("audio", audio_ids)):
    if override is not None:
      base[name] = override
    if base[name] is None:
      raise ValueError(f"token_ids has no {name}_ids and none was given")
    base[name] = _id_tuple(f"{name}_ids", base[name])
  seen = {}
  for name in ("special", "image", "video", "audio"):
    for v in base[name]:
      if v in seen and seen[v] != name:
        raise ValueError(f"token id {v} is in both {seen[v]}_ids and {name}_ids")
      seen[v] = name

  ids = jnp.asarray(input_ids)
  if ids.ndim not in (1, 2) or not jnp.issubdtype(ids.dtype, jnp.integer):
    raise ValueError(f"input_ids must be int[T] or int[B, T]; got {ids.dtype}{list(ids.shape)}")
  if attention_mask is None:
    valid = jnp.ones(ids.shape, bool)
  else:
    am = jnp.asarray(attention_mask)
    if am.shape != ids.shape:
      raise ValueError(f"attention_mask shape {am.shape} != input_ids shape {ids.shape}")
    valid = am != 0
  special = _isin(ids, base["special"]) & valid
  image = _isin(ids, base["image"]) & valid
  video = _isin(ids, base["video"]) & valid
  audio = _isin(ids, base["audio"]) & valid
  text = valid & ~(special | image | video | audio)
  return jnp.stack([text, special, special | text, image, video, audio, valid])


# ============================================================================ stage 2

def minmax(x, flat_rtol):
  """float32[..., F] -> float32[..., F] min-max normalised over the last axis; a vector whose
  range is <= flat_rtol * max(|min|, |max|) (all equal) -> zeros."""
  lo = jnp.min(x, axis=-1, keepdims=True)
  hi = jnp.max(x, axis=-1, keepdims=True)
  rng = hi - lo
  flat = rng <= flat_rtol * jnp.maximum(jnp.abs(lo), jnp.abs(hi))
  return jnp.where(flat, 0.0, (x - lo) / jnp.where(flat, 1.0, rng))


def attention_weights(attn, mask):
  """float32[L, T, T] head-mean attention probabilities A, bool[T] token set I ->
  (w_k float32[L, T], w_q float32[L, T]), zero outside I.

  E = exp(A[I, I]);  w_k[i] = sum_j E_ij / sum_i' E_i'j;  w_q[j] = sum_i E_ij / sum_j' E_ij'.
  Computed as masked softmaxes (max subtracted), which equal the literal formula."""
  ii = mask[:, None] & mask[None, :]                     # bool[T(i), T(j)]
  s = jnp.where(ii, attn, -jnp.inf)                      # [L, i, j]

  def softmax(axis):
    m = jnp.max(s, axis=axis, keepdims=True)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    e = jnp.exp(s - m)                                   # exp(-inf) = 0 outside I x I
    z = jnp.sum(e, axis=axis, keepdims=True)
    return e / jnp.where(z > 0, z, 1.0)

  w_k = jnp.sum(softmax(axis=1), axis=2)                 # column-normalise, sum rows -> [L, i]
  w_q = jnp.sum(softmax(axis=2), axis=1)                 # row-normalise, sum columns -> [L, j]
  return w_k, w_q


def _modality_scores(acts, attn, mask, flat_rtol):
  """float32[L, T, F], float32[L, T, T], bool[T] -> float32[5, L, F] (METRICS order)."""
  layers, tokens, _ = acts.shape
  m = mask.astype(jnp.float32)
  n = jnp.sum(m)
  present = n > 0
  inv_n = 1.0 / jnp.maximum(n, 1.0)
  prob = jnp.einsum("t,ltf->lf", m, (acts > 0).astype(jnp.float32), precision=_HIGHEST) * inv_n
  mx = jnp.max(jnp.where(mask[None, :, None], acts, -jnp.inf), axis=1)
  mx = jnp.where(present, mx, 0.0)
  w_k, w_q = attention_weights(attn, mask)
  w = jnp.stack([jnp.broadcast_to(m * inv_n, (layers, tokens)), w_k, w_q])   # [3, L, T]
  mean, att_k, att_q = jnp.einsum("klt,ltf->klf", w, acts, precision=_HIGHEST)
  scores = minmax(jnp.stack([prob, mean, mx, att_k, att_q]), flat_rtol)
  return jnp.where(present, scores, 0.0)


def importance_scores(acts, attn, token_masks, flat_rtol):
  """float32[L, T, F], float32[L, T, T], bool[M, T] -> float32[5, M, L, F]."""
  per_m = jax.lax.map(lambda mk: _modality_scores(acts, attn, mk, flat_rtol), token_masks)  # [M, 5, L, F]
  return jnp.swapaxes(per_m, 0, 1)


_importance_jit = jax.jit(importance_scores, static_argnames=("flat_rtol",))


def _check_importance_inputs(acts, attn, token_masks, attn_name="attn"):
  acts = jnp.asarray(acts)
  attn = jnp.asarray(attn)
  token_masks = jnp.asarray(token_masks)
  if acts.ndim != 3:
    raise ValueError(f"acts must be float[L, T, F]; got shape {acts.shape}")
  layers, tokens, _ = acts.shape
  if attn.shape != (layers, tokens, tokens):
    raise ValueError(f"{attn_name} must be float[L, T, T] = {[layers, tokens, tokens]}; got {list(attn.shape)}")
  if token_masks.ndim != 2 or token_masks.shape[1] != tokens:
    raise ValueError(f"token_masks must be bool[M, T] with T={tokens}; got shape {token_masks.shape}")
  if token_masks.dtype != jnp.bool_:
    token_masks = token_masks != 0
  return acts.astype(jnp.float32), attn.astype(jnp.float32), token_masks


def importance(acts, attn, token_masks, *, flat_rtol: float = FLAT_RTOL):
  """Stage 2 for one sample: float[L, T, F] activations a = silu(gate_proj(x)),
  float[L, T, T] head-averaged unmasked attention probabilities, bool[M, T] token sets
  -> float32[5, M, L, F] min-max-normalised scores [prob, mean, max, attn_k, attn_q].

  Absent modality -> zeros; all-equal score vector -> zeros (see module doc). Jit-able;
  modalities are processed one after another (lax.map) to bound memory."""
  acts, attn, token_masks = _check_importance_inputs(acts, attn, token_masks)
  return _importance_jit(acts, attn, token_masks, flat_rtol=float(flat_rtol))


def importance_from_attention_heads(acts, attn_heads, token_masks, *, flat_rtol: float = FLAT_RTOL):
  """float[L, T, F], float[L, H, T, T] per-head attention probabilities, bool[M, T]
  -> float32[5, M, L, F]; heads are averaged first (A = mean_h)."""
  attn_heads = jnp.asarray(attn_heads)
  if attn_heads.ndim != 4:
    raise ValueError(f"attn_heads must be float[L, H, T, T]; got shape {attn_heads.shape}")
  attn = jnp.mean(attn_heads.astype(jnp.float32), axis=1)
  return importance(acts, attn, token_masks, flat_rtol=flat_rtol)


def _importance_batch_impl(acts, attn, token_masks, flat_rtol):
  return jax.vmap(lambda a, s, k: importance_scores(a, s, k, flat_rtol))(acts, attn, token_masks)


_importance_batch_jit = jax.jit(_importance_batch_impl, static_argnames=("flat_rtol",))


def importance_batch(acts, attn, token_masks, *, flat_rtol: float = FLAT_RTOL):
  """float[B, L, T, F], float[B, L, T, T], bool[B, M, T] -> float32[B, 5, M, L, F] (vmap of
  `importance`; pad shorter samples and leave the pads out of every mask)."""
  acts, attn, token_masks = jnp.asarray(acts), jnp.asarray(attn), jnp.asarray(token_masks)
  if acts.ndim != 4:
    raise ValueError(f"acts must be float[B, L, T, F]; got shape {acts.shape}")
  b, layers, tokens, _ = acts.shape
  if attn.shape != (b, layers, tokens, tokens):
    raise ValueError(f"attn must be float[B, L, T, T] = {[b, layers, tokens, tokens]}; got {list(attn.shape)}")
  if token_masks.ndim != 3 or token_masks.shape[0] != b or token_masks.shape[2] != tokens:
    raise ValueError(f"token_masks must be bool[B={b}, M, T={tokens}]; got shape {token_masks.shape}")
  if token_masks.dtype != jnp.bool_:
    token_masks = token_masks != 0
  return _importance_batch_jit(acts.astype(jnp.float32), attn.astype(jnp.float32), token_masks,
                               flat_rtol=float(flat_rtol))


# ============================================================================ stage 3

def dataset_mean(samples) -> np.ndarray:
  """float[N, 5, M, L, F] or an iterable of float[5, M, L, F] per-sample scores -> float32[5, M, L, F]
  mean over the samples of one dataset (an absent modality's zeros are counted), summed in float64."""
  if isinstance(samples, (np.ndarray, jax.Array)):
    x = np.asarray(samples, np.float64)
    if x.ndim != 5 or x.shape[0] == 0:
      raise ValueError(f"samples must be float[N>0, 5, M, L, F]; got shape {x.shape}")
    return x.mean(axis=0).astype(np.float32)
  total, n = None, 0
  for s in samples:
    s = np.asarray(s, np.float64)
    if total is None:
      if s.ndim != 4:
        raise ValueError(f"each sample must be float[5, M, L, F]; got shape {s.shape}")
      total = np.zeros_like(s)
    elif s.shape != total.shape:
      raise ValueError(f"sample {n} has shape {s.shape}, expected {total.shape}")
    total += s
    n += 1
  if n == 0:
    raise ValueError("dataset_mean got no samples")
  return (total / n).astype(np.float32)


def aggregate(per_dataset_means: Mapping[str, object], present: Mapping[str, object] | None = None) -> np.ndarray:
  """{dataset: float[5, M, L, F] mean over its samples}, {dataset: bool[M] modality occurs}
  -> float32[5, M, L, F]: for each modality the mean over the datasets where it occurs (zeros if
  none). A dataset missing from `present` (or present=None) uses the authors' rule: the modality
  occurs iff its scores are not all zero."""
  if not per_dataset_means:
    raise ValueError("aggregate needs at least one dataset")
  present = present or {}
  total, count = None, None
  for name, x in per_dataset_means.items():
    x = np.asarray(x, np.float64)
    if x.ndim != 4 or x.shape[0] != len(METRICS):
      raise ValueError(f"dataset {name!r}: scores must be float[5, M, L, F]; got shape {x.shape}")
    if total is None:
      total = np.zeros_like(x)
      count = np.zeros(x.shape[1], np.int64)
    elif x.shape != total.shape:
      raise ValueError(f"dataset {name!r}: shape {x.shape} differs from {total.shape}")
    if name in present and present[name] is not None:
      p = np.asarray(present[name]).astype(bool)
      if p.shape != (x.shape[1],):
        raise ValueError(f"present[{name!r}] must be bool[M={x.shape[1]}]; got shape {p.shape}")
    else:
      p = np.any(x != 0, axis=(0, 2, 3))
    total += np.where(p[None, :, None, None], x, 0.0)
    count += p
  return np.where(count[None, :, None, None] > 0, total / np.maximum(count, 1)[None, :, None, None],
                  0.0).astype(np.float32)


def metric_weights(weights="default") -> np.ndarray:
  """A `WEIGHT_PRESETS` name or 5 numbers -> float64[5]."""
  if isinstance(weights, str):
    if weights not in WEIGHT_PRESETS:
      raise ValueError(f"unknown weight preset {weights!r}; expected one of {list(WEIGHT_PRESETS)}")
    weights = WEIGHT_PRESETS[weights]
  w = np.asarray(weights, np.float64)
  if w.shape != (len(METRICS),) or not np.isfinite(w).all():
    raise ValueError(f"weights must be 5 finite numbers over {list(METRICS)}; got {weights!r}")
  return w


def combine(scores, weights="default") -> np.ndarray:
  """float[5, M, L, F] -> float32[M, L, F] = sum_k weights[k] * scores[k]."""
  x = np.asarray(scores, np.float64)
  if x.ndim != 4 or x.shape[0] != len(METRICS):
    raise ValueError(f"scores must be float[5, M, L, F]; got shape {x.shape}")
  return np.tensordot(metric_weights(weights), x, axes=1).astype(np.float32)


def split_modalities(scores, split="special_text_separate", drop_absent: bool = True):
  """float[..., 7, L, F] scores over `MODALITIES` -> (names tuple, float[..., M', L, F]) restricted to
  `MODALITY_SPLITS[split]`, dropping modalities whose scores are all zero (never occurred), as the
  MINER code does before selection (so M in floor(K/M) counts only the modalities used)."""
  if split not in MODALITY_SPLITS:
    raise ValueError(f"unknown split {split!r}; expected one of {list(MODALITY_SPLITS)}")
  x = np.asarray(scores)
  if x.ndim < 3 or x.shape[-3] != len(MODALITIES):
    raise ValueError(f"scores must have the {len(MODALITIES)} MODALITIES on axis -3; got shape {x.shape}")
  names, idx = [], []
  for name in MODALITY_SPLITS[split]:
    i = MODALITY_INDEX[name]
    if drop_absent and not np.any(x[..., i, :, :] != 0):
      continue
    names.append(name)
    idx.append(i)
  return tuple(names), np.take(x, idx, axis=-3)


# ============================================================================ stage 4

def _top(x, k: int) -> np.ndarray:
  """float[n] -> int[k] indices of the k largest; equal values: lowest index first (stable)."""
  if k <= 0:
    return np.zeros(0, np.int64)
  return np.argsort(-x, kind="stable")[:k]


def budget(ratio: float, layers: int, width: int) -> int:
  """K = int(ratio * L * F)."""
  if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0.0 < float(ratio) <= 1.0:
    raise ValueError(f"ratio must be a number in (0, 1]; got {ratio!r}")
  return int(float(ratio) * layers * width)


def select(scores, ratio: float = 0.02, strategy: str = "LA_MU", seed: int = 2024) -> np.ndarray:
  """Stage 4: float[M, L, F] combined scores -> bool[M, L, F] modality-specific neurons.

  K = int(ratio * L * F). Strategies:
    LA_MU (default): for each modality the top floor(K/M) neurons over all layers at once
      (flat layer-major index), sets may overlap;
    LU_MA: per layer, the top floor(K/L) entries of the stacked float[M, F] scores of that layer
      (flat modality-major index); a selected (m, j) marks neuron j of that layer for modality m;
    adaptive: the top K of sum_m scores[m] (float[L, F]); each such neuron goes to its argmax
      modality (equal maxima: the lowest modality index), so sets never overlap;
    uniform: the top floor(K/(M*L)) neurons of every (layer, modality);
    random: K draws of (layer, neuron) with replacement, exactly the authors' draws
      (`random_draws`: Python `random` seeded with `seed`, layer then neuron per draw); EVERY
      modality gets this same set (the authors keep it as one extra "random" group that is
      deactivated as a whole). Duplicates collapse, so at most K distinct neurons.
  Ties: among equal scores the lowest flat index wins (stable sort). Returns numpy bool.
  """
  x = np.asarray(scores)
  if x.ndim != 3 or min(x.shape) == 0:
    raise ValueError(f"scores must be float[M, L, F] with no empty axis; got shape {x.shape}")
  if strategy not in STRATEGIES:
    raise ValueError(f"unknown strategy {strategy!r}; expected one of {list(STRATEGIES)}")
  x = x.astype(np.float64) if not np.issubdtype(x.dtype, np.floating) else x
  if np.isnan(x).any():
    raise ValueError("scores contain NaN")
  M, L, F = x.shape
  K = budget(ratio, L, F)
  out = np.zeros((M, L, F), bool)
  if strategy == "LA_MU":
    for m in range(M):
      out[m].reshape(-1)[_top(x[m].reshape(-1), K // M)] = True
  elif strategy == "LU_MA":
    for l in range(L):
      idx = _top(x[:, l, :].reshape(-1), K // L)
      out[idx // F, l, idx % F] = True
  elif strategy == "adaptive":
    idx = _top(x.sum(axis=0).reshape(-1), K)
    layer, neuron = idx // F, idx % F
    owner = np.argmax(x[:, layer, neuron], axis=0)
    out[owner, layer, neuron] = True
  elif strategy == "uniform":
    k = K // (M * L)
    for m in range(M):
      for l in range(L):
        out[m, l, _top(x[m, l], k)] = True
  else:  # random
    layer, neuron = random_draws(K, L, F, seed)
    out[:, layer, neuron] = True
  return out


def random_draws(k: int, layers: int, width: int, seed: int = 2024) -> tuple:
  """The MINER code's `random` strategy: `random.seed(seed)`, then k times
  `(random.randint(0, L - 1), random.randint(0, F - 1))` (layer first). A private
  `random.Random(seed)` gives the same numbers without touching the global state.
  -> (int64[k] layers, int64[k] neurons), with repeats."""
  import random
  rng = random.Random(seed)
  draws = [(rng.randint(0, layers - 1), rng.randint(0, width - 1)) for _ in range(k)]
  arr = np.asarray(draws, np.int64).reshape(-1, 2)
  return arr[:, 0], arr[:, 1]


def deactivation_masks(selected, modalities=None, complement: bool = False, value="zero", acts_min=None):
  """bool[M, L, F] -> (scale float32[L, F], offset float32[L, F]) with new_act = act * scale + offset.

  D = union of `selected` over `modalities` (None = all; else a list of modality indices),
  or its complement (complement=True: keep only the selected). On D: value='zero' -> 0;
  'min' -> acts_min (scalar, float[L] or float[L, F]; the authors use the minimum of the layer's
  activation tensor at each call, which must be supplied here, e.g. measured beforehand);
  a number -> that constant. Off D: unchanged (scale 1, offset 0). `offset` is all zeros for
  'zero', so `scale` alone is the multiplicative `masks` entry that `model.apply` takes."""
  sel = np.asarray(selected).astype(bool)
  if sel.ndim != 3:
    raise ValueError(f"selected must be bool[M, L, F]; got shape {sel.shape}")
  M, L, F = sel.shape
  if modalities is None:
    idx = list(range(M))
  else:
    idx = [int(i) for i in modalities]
    bad = [i for i in idx if not 0 <= i < M]
    if bad:
      raise ValueError(f"modality indices {bad} out of range for M={M}")
  d = np.any(sel[idx], axis=0) if idx else np.zeros((L, F), bool)
  if complement:
    d = ~d
  if isinstance(value, str):
    if value == "zero":
      fill = np.zeros((L, F))
    elif value == "min":
      if acts_min is None:
        raise ValueError("value='min' needs acts_min (scalar, float[L] or float[L, F])")
      a = np.asarray(acts_min, np.float64)
      if a.ndim == 1:
        a = a[:, None]
      try:
        fill = np.broadcast_to(a, (L, F))
      except ValueError as e:
        raise ValueError(f"acts_min shape {np.shape(acts_min)} does not broadcast to [L={L}, F={F}]") from e
    else:
      raise ValueError(f"value must be 'zero', 'min' or a number; got {value!r}")
  elif isinstance(value, numbers.Real) and not isinstance(value, bool):
    fill = np.full((L, F), float(value))
  else:
    raise ValueError(f"value must be 'zero', 'min' or a number; got {value!r}")
  scale = np.where(d, 0.0, 1.0).astype(np.float32)
  offset = np.where(d, fill, 0.0).astype(np.float32)
  return scale, offset


def overlap_table(selected) -> np.ndarray:
  """bool[M, L, F] -> int64[M, M, L]: O[a, b, l] = # neurons of layer l selected for both a and b
  (diagonal = per-layer set sizes)."""
  sel = np.asarray(selected).astype(bool)
  if sel.ndim != 3:
    raise ValueError(f"selected must be bool[M, L, F]; got shape {sel.shape}")
  s = sel.astype(np.int64)
  return np.einsum("alf,blf->abl", s, s)


def combination_overlap(selected, names) -> tuple:
  """bool[M, L, F] + M modality names -> (combination names, int64[C, L]) for every combination of
  1..M modalities in `itertools.combinations` order (singles, then pairs, ...), named 'a-b-c'.
  Row c, layer l = # neurons of layer l selected for every modality of combination c (a single
  modality: its set size), as the MINER code's analysis table; sum over layers for its 'total' row.
  (The authors count a single modality's list entries, so repeated random draws count twice
  there; sets here never hold a neuron twice.)"""
  import itertools
  sel = np.asarray(selected).astype(bool)
  if sel.ndim != 3 or sel.shape[0] != len(names):
    raise ValueError(f"selected must be bool[M={len(names)}, L, F]; got shape {sel.shape}")
  combos = [c for r in range(1, len(names) + 1) for c in itertools.combinations(range(len(names)), r)]
  counts = np.stack([np.all(sel[list(c)], axis=0).sum(-1) for c in combos]).astype(np.int64) if combos else \
      np.zeros((0, sel.shape[1]), np.int64)
  return ["-".join(names[i] for i in c) for c in combos], counts
