"""DAPE (MMNeuron): domain-specific neurons = LAPE's entropy selection over domains.

Per module, with counts C float[D, L, F] (# tokens of domain d whose neuron (l, j) is > 0)
and n_tokens N float[D] (see docs/ALGORITHMS.md, "MMNeuron"):

1. p = C / N[d];  q = p / sum_d p (0 where the sum is 0);  H = -sum_d q ln q (0 ln 0 = 0).
2. tau = the round(filter_rate * D*L*F)-th smallest p (1-indexed, like torch.kthvalue);
   a neuron with no domain having p > tau gets H = +inf.
3. keep the round(top_rate * L*F) smallest H over all layers at once (global top-k).
4. bar = the round(bar_ratio * D*L*F)-th smallest p; a kept neuron belongs to EVERY domain
   with p > bar (sets may overlap); one with H = +inf or no domain above bar is dropped.

`round` is Python's (half to even), as in the authors' script. Statistics are float32,
as in the authors' torch code.

Ties in step 3 go to the lowest flat index (layer-major, then neuron), what a stable
argsort does. "Tie" means equal up to float32 noise: entropies within
`tie_tol * max(1, |h_k|)` of the k-th smallest entropy h_k count as equal (default
`tie_tol = 4 * D * eps_float32`, ~2.4e-6 for D=5, about 10x the float32 error of H).
Without it, neurons whose H is mathematically equal (e.g. count vectors that are
scaled copies of each other) would be ordered by float rounding noise. `tie_tol=0`
breaks only bit-identical ties.

One documented difference from the authors' script: when the top-k reaches neurons with
H = +inf (fewer finite ones than the budget) and bar_ratio < filter_rate, their script can
still assign those neurons to domains; here they are dropped, as docs/ALGORITHMS.md says.
"""
import numbers

import jax
import jax.numpy as jnp
import numpy as np

_EPS32 = float(np.finfo(np.float32).eps)


# ----------------------------------------------------------------------------- checks

def _check_rate(name: str, value) -> float:
  if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < float(value) <= 1.0:
    raise ValueError(f"{name} must be a number in (0, 1]; got {value!r}")
  return float(value)


def _kth(rate: float, n: int, name: str) -> int:
  """1-indexed rank round(rate * n) for a kthvalue; must be >= 1."""
  k = round(n * rate)
  if k < 1:
    raise ValueError(f"{name}={rate} of {n} values rounds to rank 0; kthvalue needs a rank >= 1")
  return k


def _check_counts(counts, n_tokens):
  """-> (counts float64[D, L, F], n_tokens float64[D]) as numpy, or a ValueError."""
  counts = np.asarray(counts)
  n_tokens = np.asarray(n_tokens)
  if counts.ndim != 3:
    raise ValueError(f"counts must be 3-D [D, L, F] (domains, layers, neurons); got shape {counts.shape}")
  if min(counts.shape) == 0:
    raise ValueError(f"counts has an empty axis: shape {counts.shape}")
  if n_tokens.ndim != 1 or n_tokens.shape[0] != counts.shape[0]:
    raise ValueError(f"n_tokens must have shape [D] = [{counts.shape[0]}] to match counts {counts.shape}; "
                     f"got shape {n_tokens.shape}")
  for name, x in (("counts", counts), ("n_tokens", n_tokens)):
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
      raise ValueError(f"{name} must be numeric; got dtype {x.dtype}")
  counts = counts.astype(np.float64)
  n_tokens = n_tokens.astype(np.float64)
  if not np.isfinite(counts).all() or (counts < 0).any():
    raise ValueError("counts must be finite and >= 0")
  if not np.isfinite(n_tokens).all() or (n_tokens <= 0).any():
    bad = [int(d) for d in np.flatnonzero(~(np.isfinite(n_tokens) & (n_tokens > 0)))]
    raise ValueError(f"n_tokens must be finite and > 0 for every domain; domains {bad} have {n_tokens[bad].tolist()}")
  over = counts.reshape(counts.shape[0], -1).max(axis=1) > n_tokens
  if over.any():
    raise ValueError(f"counts exceed n_tokens for domains {np.flatnonzero(over).tolist()}: a neuron cannot be "
                     "active on more tokens than were seen")
  return counts, n_tokens


def _probs(counts, n_tokens) -> np.ndarray:
  """p = C / N[d] computed in float64 and rounded once to float32[D, L, F]."""
  return (counts / n_tokens[:, None, None]).astype(np.float32)


# ----------------------------------------------------------------------------- jax core

def _entropy_jax(p):
  """float32[D, L, F] activation probabilities -> float32[L, F] entropy over domains (nats)."""
  p = jnp.sort(p, axis=0)  # a fixed summation order: permuted domains give bit-identical H
  s = jnp.sum(p, axis=0)
  q = jnp.where(s > 0, p / jnp.where(s > 0, s, 1.0), 0.0)
  plogq = jnp.where(q > 0, q * jnp.log(jnp.where(q > 0, q, 1.0)), 0.0)
  return 0.0 - jnp.sum(plogq, axis=0)


_entropy_jit = jax.jit(_entropy_jax)


def _smallest_k(x, k, tie_tol):
  """bool mask of the k smallest of float[n] (+inf allowed; k a traced int, 0 <= k <= n); ties
  (within tie_tol * max(1, |h_k|) of the k-th smallest h_k) go to the lowest index."""
  hk = jnp.sort(x)[jnp.maximum(k - 1, 0)]
  finite = jnp.isfinite(hk)
  tol = tie_tol * jnp.maximum(1.0, jnp.abs(jnp.where(finite, hk, 0.0)))
  lo = jnp.where(finite, hk - tol, hk)
  hi = jnp.where(finite, hk + tol, hk)
  strict = x < lo  # at most k - 1 of them
  tie = (x >= lo) & (x <= hi)
  room = k - jnp.sum(strict)
  return (strict | (tie & (jnp.cumsum(tie) <= room))) & (k > 0)


@jax.jit
def _select_core(p, tie_tol, k_filter, k_top, k_bar):
  """float32[D, L, F] p -> bool[D, L, F]; int ranks 1-indexed (k_top may be 0). Ranks are traced:
  one compilation per shape, whatever the rates."""
  _, layers, width = p.shape
  flat = jnp.sort(p.reshape(-1))
  tau, bar = flat[k_filter - 1], flat[k_bar - 1]
  h = _entropy_jax(p)
  h = jnp.where(jnp.any(p > tau, axis=0), h, jnp.inf)
  kept = _smallest_k(h.reshape(-1), k_top, tie_tol).reshape(layers, width)
  return (kept & jnp.isfinite(h))[None] & (p > bar)


def budget(layers: int, width: int, top_rate: float) -> int:
  """Neurons DAPE may select in a module of L layers x F neurons: round(top_rate * L * F) (step 3)."""
  return round(layers * width * top_rate)


def _ranks(shape, top_rate, filter_rate, bar_ratio):
  d, layers, width = shape
  top_rate = _check_rate("top_rate", top_rate)
  filter_rate = _check_rate("filter_rate", filter_rate)
  bar_ratio = _check_rate("bar_ratio", bar_ratio)
  n = d * layers * width
  return dict(k_filter=_kth(filter_rate, n, "filter_rate"), k_top=budget(layers, width, top_rate),
              k_bar=_kth(bar_ratio, n, "bar_ratio"))


def _default_tol(tie_tol, d: int) -> float:
  if tie_tol is None:
    return 4.0 * d * _EPS32
  if not isinstance(tie_tol, numbers.Real) or not tie_tol >= 0:
    raise ValueError(f"tie_tol must be a number >= 0 or None; got {tie_tol!r}")
  return float(tie_tol)


def select_jax(counts, n_tokens, top_rate: float = 0.01, filter_rate: float = 0.95, bar_ratio: float = 0.95,
               *, tie_tol=None):
  """jnp version of `select` for use inside jit (rates static): float[D, L, F], float[D] -> jnp bool[D, L, F].
  No value checks; p is computed as float32(C) / float32(N)."""
  counts = jnp.asarray(counts, jnp.float32)
  p = counts / jnp.asarray(n_tokens, jnp.float32)[:, None, None]
  ranks = _ranks(p.shape, top_rate, filter_rate, bar_ratio)
  return _select_core(p, jnp.float32(_default_tol(tie_tol, p.shape[0])), **ranks)


# ----------------------------------------------------------------------------- public API

def select(counts, n_tokens, top_rate: float = 0.01, filter_rate: float = 0.95, bar_ratio: float = 0.95,
           *, tie_tol=None) -> np.ndarray:
  """DAPE selection. counts float|int[D, L, F], n_tokens float|int[D] -> numpy bool[D, L, F]
  (mask[d, l, j]: neuron j of layer l is specific to domain d; domains may share a neuron).
  `tie_tol`: see the module docstring (None = 4 * D * float32 eps; 0 = bit-identical ties only)."""
  counts, n_tokens = _check_counts(counts, n_tokens)
  ranks = _ranks(counts.shape, top_rate, filter_rate, bar_ratio)
  tol = _default_tol(tie_tol, counts.shape[0])
  return np.asarray(_select_core(jnp.asarray(_probs(counts, n_tokens)), jnp.float32(tol), **ranks))


def entropy(counts, n_tokens) -> np.ndarray:
  """Entropy over domains of the normalised activation probabilities (step 1, no +inf filter):
  counts [D, L, F], n_tokens [D] -> numpy float32[L, F], in nats (0 for never-active neurons)."""
  counts, n_tokens = _check_counts(counts, n_tokens)
  return np.asarray(_entropy_jit(jnp.asarray(_probs(counts, n_tokens))))


def summary(selected, domain_names) -> dict:
  """bool[D, L, F] selection -> {
    'unique': # neurons in at least one domain,
    'total': sum of the per-domain counts (overlapping neurons counted once per domain),
    'per_domain': {name: # neurons},
    'overlap_histogram': [# neurons in exactly 1, 2, ..., D domains],
    'per_layer': {name: [# neurons in layer l for l < L]},
    'per_layer_unique': [# distinct neurons in layer l]}."""
  selected = np.asarray(selected)
  if selected.ndim != 3:
    raise ValueError(f"selected must be 3-D [D, L, F]; got shape {selected.shape}")
  if selected.dtype != bool:
    raise ValueError(f"selected must be a bool mask; got dtype {selected.dtype}")
  names = [str(n) for n in domain_names]
  if len(names) != selected.shape[0]:
    raise ValueError(f"{len(names)} domain names for {selected.shape[0]} domains in selected {selected.shape}")
  if len(set(names)) != len(names):
    raise ValueError(f"domain names must be unique; got {names}")
  n_domains = selected.sum(axis=0)  # [L, F]
  return {
      "unique": int((n_domains > 0).sum()),
      "total": int(selected.sum()),
      "per_domain": {n: int(selected[i].sum()) for i, n in enumerate(names)},
      "overlap_histogram": [int((n_domains == k).sum()) for k in range(1, len(names) + 1)],
      "per_layer": {n: selected[i].sum(axis=1).astype(int).tolist() for i, n in enumerate(names)},
      "per_layer_unique": (n_domains > 0).sum(axis=1).astype(int).tolist(),
  }
