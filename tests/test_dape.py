"""DAPE selection (MMNeuron) against an independent slow implementation written from the
docs/ALGORITHMS.md text: loops, np.partition, and exact rational arithmetic to decide which
entropies are mathematically tied."""
import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmneuron_jax.analysis import dape


# ----------------------------------------------------------------------------- reference

def reference_select(counts, n_tokens, top_rate=0.01, filter_rate=0.95, bar_ratio=0.95):
  """-> (mask bool[D, L, F], split_tie: whether the top-k cut through a group of equal entropies).

  Plain Python/numpy from docs/ALGORITHMS.md. Entropies that are mathematically equal (same multiset of
  normalised probabilities q, compared exactly as fractions) share one value, so ties are exact;
  among ties the lowest flat index (layer-major) wins, like a stable argsort."""
  C = np.asarray(counts).astype(np.int64)
  N = np.asarray(n_tokens).astype(np.int64)
  D, L, F = C.shape
  p = C / N[:, None, None]
  flat = p.reshape(-1)

  def kth_smallest(k):  # 1-indexed, like torch.kthvalue
    return np.partition(flat, k - 1)[k - 1]

  tau = kth_smallest(round(filter_rate * D * L * F))
  bar = kth_smallest(round(bar_ratio * D * L * F))
  by_key = {}
  H = np.empty(L * F)
  for l in range(L):
    for j in range(F):
      i = l * F + j
      if not any(p[d, l, j] > tau for d in range(D)):
        H[i] = math.inf
        continue
      exact = [Fraction(int(C[d, l, j]), int(N[d])) for d in range(D)]
      total = sum(exact)
      q = tuple(sorted(x / total for x in exact))
      h = 0.0
      for x in q:
        if x > 0:
          h -= float(x) * math.log(float(x))
      H[i] = by_key.setdefault(q, h)
  k = round(top_rate * L * F)
  order = sorted(range(L * F), key=lambda i: (H[i], i))
  chosen = order[:k]
  split_tie = 0 < k < L * F and H[order[k - 1]] == H[order[k]] and math.isfinite(H[order[k]])
  mask = np.zeros((D, L, F), bool)
  for i in chosen:
    if math.isinf(H[i]):
      continue
    l, j = divmod(i, F)
    for d in range(D):
      if p[d, l, j] > bar:
        mask[d, l, j] = True
  return mask, split_tie


def reference_entropy(counts, n_tokens):
  C = np.asarray(counts, np.float64)
  p = C / np.asarray(n_tokens, np.float64)[:, None, None]
  out = np.zeros(C.shape[1:])
  for l in range(C.shape[1]):
    for j in range(C.shape[2]):
      s = p[:, l, j].sum()
      for d in range(C.shape[0]):
        if s > 0 and p[d, l, j] > 0:
          q = p[d, l, j] / s
          out[l, j] -= q * math.log(q)
  return out


# ----------------------------------------------------------------------------- data

def make_counts(rng, shape, hi, n_tokens, dead_frac=0.15, sparse=0.5, zero_domain=None):
  """Integer counts in [0, hi] (ties galore), some domains silenced per neuron (low entropy),
  dead neurons (all-zero columns) and optionally one domain with zero counts everywhere."""
  n = np.asarray(n_tokens)
  C = rng.integers(0, hi + 1, shape)
  C *= rng.random(shape) > sparse * rng.random(shape[1:])
  C[:, rng.random(shape[1:]) < dead_frac] = 0
  if zero_domain is not None:
    C[zero_domain] = 0
  return np.minimum(C, n[:, None, None])


CASES = {  # name: (shape, hi, n_tokens, zero_domain)
    "5x3x17-tiny": ((5, 3, 17), 3, [3, 3, 3, 3, 3], None),
    "2x1x40": ((2, 1, 40), 5, [5, 8], None),
    "5x4x64-zero-domain": ((5, 4, 64), 6, [6, 6, 10, 6, 6], 2),
    "5x4x64-wide": ((5, 4, 64), 20, [20, 25, 20, 40, 20], None),
    "3x2x30-large": ((3, 2, 30), 100000, [100000, 150000, 100000], None),
}
RATES = [(0.01, 0.95, 0.95), (0.1, 0.9, 0.9), (0.2, 0.8, 0.9), (0.3, 0.9, 0.7), (0.5, 0.5, 0.5), (0.15, 0.6, 0.75),
         (1.0, 0.95, 0.95)]


@pytest.mark.parametrize("case", sorted(CASES))
def test_select_matches_reference(case):
  shape, hi, n_tokens, zero_domain = CASES[case]
  selected, split = 0, 0
  for seed in range(3):
    rng = np.random.default_rng([seed, sorted(CASES).index(case)])
    counts = make_counts(rng, shape, hi, n_tokens, zero_domain=zero_domain)
    for top_rate, filter_rate, bar_ratio in RATES:
      want, split_tie = reference_select(counts, n_tokens, top_rate, filter_rate, bar_ratio)
      got = dape.select(counts, n_tokens, top_rate=top_rate, filter_rate=filter_rate, bar_ratio=bar_ratio)
      assert got.dtype == bool and got.shape == shape
      np.testing.assert_array_equal(got, want, err_msg=f"{case} seed={seed} rates={(top_rate, filter_rate, bar_ratio)}")
      selected += int(want.any())
      split += int(split_tie)
      if zero_domain is not None:
        assert not got[zero_domain].any()
  assert selected >= 5, "each case should select neurons for a good share of the settings"
  if hi <= 6:
    assert split >= 1, "the small-count cases should cut through tied entropies at least once"


def test_ties_go_to_lowest_flat_index():
  # every neuron's probabilities are (x, 2x) or (2x, x): all entropies equal H(1/3, 2/3)
  # mathematically, though float32 computes them from different numbers
  a = np.array([[1, 3, 5, 7, 9, 3], [9, 7, 5, 3, 1, 1]])  # [L, F]
  counts = np.stack([a, 2 * a])
  counts[:, 1, ::2] = counts[::-1, 1, ::2]  # swap the domains for some neurons
  n_tokens = [20, 20]
  got = dape.select(counts, n_tokens, top_rate=5 / 12, filter_rate=1 / 24, bar_ratio=1 / 24)
  want, split = reference_select(counts, n_tokens, 5 / 12, 1 / 24, 1 / 24)
  assert split
  np.testing.assert_array_equal(got, want)
  kept = got.any(axis=0).reshape(-1)
  # tau = bar = the smallest p (0.05): neuron (0, 0) has p = (0.05, 0.1) and keeps domain 1 only
  assert np.flatnonzero(kept).tolist() == [0, 1, 2, 3, 4]


def test_float32_noise_ties_go_to_lowest_flat_index():
  # (0, 5, 20) and (0, 1, 4) have the same q; float32 puts neuron 0's entropy ~1 ulp above neuron 1's
  counts = np.array([[0, 5, 20], [0, 1, 4], [10, 10, 10], [3, 9, 12]]).T[:, None, :]  # [D=3, L=1, F=4]
  args = (counts, [30, 30, 30], 1 / 4, 1 / 12, 1 / 12)  # budget 1 neuron, tau = bar = 0
  want, split = reference_select(*args)
  assert split
  np.testing.assert_array_equal(dape.select(*args), want)
  assert want[:, 0, 0].tolist() == [False, True, True] and want.sum() == 2


def test_planted_domain_neurons_are_selected():
  rng = np.random.default_rng(0)
  D, L, F, N = 5, 3, 40, 1000
  counts = rng.binomial(N, 0.3 + 0.05 * rng.random((D, L, F)))
  cells = rng.choice(L * F, size=2 * D + 1, replace=False)
  truth = np.zeros((D, L, F), bool)
  for i, cell in enumerate(cells):
    l, j = divmod(int(cell), F)
    owners = [i // 2] if i < 2 * D else [0, 3]  # the last planted neuron is shared by domains 0 and 3
    counts[:, l, j] = 0
    for d in owners:
      counts[d, l, j] = 900 + d
      truth[d, l, j] = True
  got = dape.select(counts, [N] * D, top_rate=len(cells) / (L * F))
  np.testing.assert_array_equal(got, truth)
  s = dape.summary(got, list("abcde"))
  assert s["unique"] == 11 and s["overlap_histogram"] == [10, 1, 0, 0, 0]
  assert s["per_domain"] == {"a": 3, "b": 2, "c": 2, "d": 3, "e": 2}


def test_defaults_and_input_types():
  rng = np.random.default_rng(3)
  counts = make_counts(rng, (5, 4, 64), 20, [20] * 5)
  want, _ = reference_select(counts, [20] * 5)
  for c, n in [(counts, [20] * 5), (counts.astype(np.float32), np.full(5, 20.0)), (jnp.asarray(counts), jnp.full(5, 20))]:
    np.testing.assert_array_equal(dape.select(c, n), want)
  jitted = jax.jit(lambda c, n: dape.select_jax(c, n, 0.2, 0.8, 0.9))(counts.astype(np.float32), jnp.full(5, 20.0))
  np.testing.assert_array_equal(np.asarray(jitted), dape.select(counts, [20] * 5, 0.2, 0.8, 0.9))


def test_entropy_matches_reference():
  rng = np.random.default_rng(4)
  counts = make_counts(rng, (5, 4, 64), 20, [20, 25, 20, 40, 20])
  h = dape.entropy(counts, [20, 25, 20, 40, 20])
  assert h.dtype == np.float32 and h.shape == (4, 64)
  np.testing.assert_allclose(h, reference_entropy(counts, [20, 25, 20, 40, 20]), atol=2e-6)
  uniform = dape.entropy(np.full((5, 1, 3), 7), [10] * 5)
  np.testing.assert_allclose(uniform, np.log(5), rtol=1e-6)
  one_hot = np.zeros((5, 1, 2), int)
  one_hot[2, 0, 0] = 4
  assert dape.entropy(one_hot, [10] * 5).tolist() == [[0.0, 0.0]]  # one domain / never active


def test_summary_counts_match_mask():
  rng = np.random.default_rng(5)
  mask = rng.random((4, 3, 50)) < 0.08
  names = ["ad", "med", "rs", "doc"]
  s = dape.summary(mask, names)
  per_neuron = mask.sum(axis=0)
  assert s["unique"] == int((per_neuron > 0).sum())
  assert s["total"] == int(mask.sum())
  assert s["per_domain"] == {n: int(mask[i].sum()) for i, n in enumerate(names)}
  assert s["overlap_histogram"] == [int((per_neuron == k).sum()) for k in range(1, 5)]
  assert sum(s["overlap_histogram"]) == s["unique"]
  assert sum(k * v for k, v in enumerate(s["overlap_histogram"], 1)) == s["total"]
  for i, n in enumerate(names):
    assert s["per_layer"][n] == [int(mask[i, l].sum()) for l in range(3)]
  assert s["per_layer_unique"] == [int(mask[:, l].any(axis=0).sum()) for l in range(3)]


def test_bad_inputs_raise_clear_errors():
  counts = np.ones((3, 2, 10))
  n = [5, 5, 5]
  with pytest.raises(ValueError, match="3-D"):
    dape.select(np.ones((3, 20)), n)
  with pytest.raises(ValueError, match="n_tokens must have shape"):
    dape.select(counts, [5, 5])
  with pytest.raises(ValueError, match="n_tokens must be finite and > 0"):
    dape.select(counts, [5, 0, 5])
  with pytest.raises(ValueError, match="exceed n_tokens"):
    dape.select(counts * 6, n)
  with pytest.raises(ValueError, match=">= 0"):
    dape.select(-counts, n)
  for name in ("top_rate", "filter_rate", "bar_ratio"):
    for bad in (0.0, -0.1, 1.5, float("nan"), True, "0.5"):
      with pytest.raises(ValueError, match=name):
        dape.select(counts, n, **{name: bad})
  with pytest.raises(ValueError, match="rank 0"):
    dape.select(np.ones((1, 1, 1)), [2], filter_rate=0.4)
  with pytest.raises(ValueError, match="domain names"):
    dape.summary(np.zeros((3, 2, 4), bool), ["a", "b"])
  with pytest.raises(ValueError, match="3-D"):
    dape.entropy(np.ones((2, 3)), [1, 1])


def test_zero_budget_selects_nothing():
  counts = np.arange(2 * 1 * 10).reshape(2, 1, 10)
  assert not dape.select(counts, [100, 100], top_rate=0.01).any()  # round(0.1) = 0 neurons
