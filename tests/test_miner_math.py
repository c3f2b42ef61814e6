"""MINER math (analysis.miner) against independent slow plain-Python/numpy implementations
written from the REFERENCE.md text (explicit loops over modalities / layers / tokens)."""
import math

import jax
import numpy as np
import pytest

from mmneuron_jax.analysis import miner
from mmneuron_jax.models.mllm import qwen2_audio, qwen2_vl

VL = dict(bos=151644, eos=151645, vs=151652, ve=151653, img=151655, vid=151656)
AU = dict(bos=151644, eos=151645, abos=151647, aeos=151648, aud=151646)


# ============================================================================ references

def ref_minmax(x, rtol):
  """float64[F] -> min-max normalised; all equal (range <= rtol * max(|min|, |max|)) -> zeros."""
  lo, hi = min(x), max(x)
  if hi - lo <= rtol * max(abs(lo), abs(hi)):
    return np.zeros(len(x))
  return np.array([(v - lo) / (hi - lo) for v in x])


def ref_importance(acts, attn, masks, rtol=miner.FLAT_RTOL):
  """acts[L, T, F], attn[L, T, T], masks[M, T] -> float64[5, M, L, F], literally from REFERENCE.md."""
  acts = np.asarray(acts, np.float64)
  attn = np.asarray(attn, np.float64)
  L, T, F = acts.shape
  M = masks.shape[0]
  out = np.zeros((5, M, L, F))
  for m in range(M):
    I = [t for t in range(T) if masks[m, t]]
    if not I:
      continue  # absent modality -> zeros
    n = len(I)
    for l in range(L):
      prob, mean, mx, ak, aq = (np.zeros(F) for _ in range(5))
      for j in range(F):
        prob[j] = sum(1.0 for t in I if acts[l, t, j] > 0) / n
        mean[j] = sum(acts[l, t, j] for t in I) / n
        mx[j] = max(acts[l, t, j] for t in I)
      E = [[math.exp(attn[l, i, j]) for j in I] for i in I]  # E = exp(A[I, I])
      col = [sum(E[a][b] for a in range(n)) for b in range(n)]   # sum_i' E_i'j
      row = [sum(E[a][b] for b in range(n)) for a in range(n)]   # sum_j' E_ij'
      w_k = [sum(E[a][b] / col[b] for b in range(n)) for a in range(n)]
      w_q = [sum(E[a][b] / row[a] for a in range(n)) for b in range(n)]
      for j in range(F):
        ak[j] = sum(w_k[a] * acts[l, I[a], j] for a in range(n))
        aq[j] = sum(w_q[b] * acts[l, I[b], j] for b in range(n))
      for k, v in enumerate((prob, mean, mx, ak, aq)):
        out[k, m, l] = ref_minmax(list(v), rtol)
  return out


def ref_top(values, k):
  """list of floats -> indices of the k largest; equal values: lowest index first."""
  order = sorted(range(len(values)), key=lambda i: (-values[i], i))
  return order[:max(k, 0)]


def ref_select(scores, ratio, strategy, seed=2024):
  x = np.asarray(scores, np.float64)
  M, L, F = x.shape
  K = int(ratio * L * F)
  out = np.zeros((M, L, F), bool)
  if strategy == "LA_MU":
    for m in range(M):
      flat = [x[m, l, j] for l in range(L) for j in range(F)]
      for i in ref_top(flat, K // M):
        out[m, i // F, i % F] = True
  elif strategy == "LU_MA":
    for l in range(L):
      flat = [x[m, l, j] for m in range(M) for j in range(F)]
      for i in ref_top(flat, K // L):
        out[i // F, l, i % F] = True
  elif strategy == "adaptive":
    flat = [sum(x[m, l, j] for m in range(M)) for l in range(L) for j in range(F)]
    for i in ref_top(flat, K):
      l, j = i // F, i % F
      best, owner = -math.inf, None
      for m in range(M):
        if x[m, l, j] > best:
          best, owner = x[m, l, j], m
      out[owner, l, j] = True
  elif strategy == "uniform":
    for m in range(M):
      for l in range(L):
        for j in ref_top([x[m, l, jj] for jj in range(F)], K // (M * L)):
          out[m, l, j] = True
  elif strategy == "random":
    for l, j in authors_random(K, L, F, seed):
      for m in range(M):
        out[m, l, j] = True
  return out


def authors_random(K, L, N, seed=2024):
  """huang-kc/MINER utils/func.py:179-180 after set_seed(2024): the module-level random, seeded."""
  import random
  state = random.getstate()
  try:
    random.seed(seed)
    return [(random.randint(0, L - 1), random.randint(0, N - 1)) for _ in range(K)]
  finally:
    random.setstate(state)


# ============================================================================ fixtures

def make_case(seed=0, L=4, T=11, F=13):
  """acts with negative values, an integer-valued layer (ties), an all-equal layer;
  attention = row-softmaxed random logits; 7 masks incl. absent, single-token, full, overlapping."""
  rng = np.random.default_rng(seed)
  acts = rng.normal(size=(L, T, F)).astype(np.float32)
  acts[1] = rng.integers(-2, 4, size=(T, F)).astype(np.float32)  # integer valued: many ties
  acts[2] = 0.3                                                    # all equal: min-max degenerate
  logits = rng.normal(size=(L, T, T)) * 2.0
  attn = np.exp(logits - logits.max(-1, keepdims=True))
  attn = (attn / attn.sum(-1, keepdims=True)).astype(np.float32)
  masks = np.zeros((7, T), bool)
  masks[0] = rng.random(T) < 0.5
  masks[0, :2] = True
  # masks[1] stays empty: absent modality
  masks[2, 5] = True                 # single token
  masks[3] = True                    # every token
  masks[4, [0, 3, 4, 9]] = True
  masks[5] = ~masks[0]
  masks[6, ::2] = True
  return acts, attn, masks


# ============================================================================ stage 2

@pytest.mark.parametrize("seed", [0, 1])
def test_importance_matches_reference(seed):
  acts, attn, masks = make_case(seed)
  got = np.asarray(miner.importance(acts, attn, masks))
  want = ref_importance(acts, attn, masks)
  assert got.shape == (5, 7, 4, 13) and got.dtype == np.float32
  np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)
  assert np.all(got[:, 1] == 0)                 # absent modality
  assert np.all(got[:, :, 2] == 0)              # all-equal layer
  # single-token modality: attention weights are 1, so mean = max = attn_k = attn_q
  for k in (2, 3, 4):
    np.testing.assert_allclose(got[k, 2], got[1, 2], atol=1e-6)
  # values in [0, 1], each present non-degenerate vector hits both ends
  assert got.min() >= 0 and got.max() <= 1 + 1e-6
  np.testing.assert_allclose(got[1, 0, 0].max(), 1.0, atol=1e-6)
  assert got[1, 0, 0].min() == 0


def test_importance_large_attention_values_stable():
  """Any real attention input (not only probabilities) gives the literal exp-formula result."""
  acts, attn, masks = make_case(3)
  big = (attn * 40.0).astype(np.float32)
  got = np.asarray(miner.importance(acts, big, masks))
  np.testing.assert_allclose(got, ref_importance(acts, big, masks), rtol=0, atol=5e-5)


def test_importance_jit_heads_and_batch():
  acts, attn, masks = make_case(4)
  want = np.asarray(miner.importance(acts, attn, masks))
  np.testing.assert_allclose(np.asarray(jax.jit(miner.importance)(acts, attn, masks)), want, atol=1e-6)
  rng = np.random.default_rng(5)
  heads = rng.random((4, 3, 11, 11)).astype(np.float32)
  got = np.asarray(miner.importance_from_attention_heads(acts, heads, masks))
  np.testing.assert_allclose(got, ref_importance(acts, heads.astype(np.float64).mean(1), masks), atol=2e-5)
  acts2, attn2, masks2 = make_case(6)
  batch = np.asarray(miner.importance_batch(np.stack([acts, acts2]), np.stack([attn, attn2]),
                                            np.stack([masks, masks2])))
  assert batch.shape == (2, 5, 7, 4, 13)
  np.testing.assert_allclose(batch[0], want, atol=1e-6)
  np.testing.assert_allclose(batch[1], np.asarray(miner.importance(acts2, attn2, masks2)), atol=1e-6)


def test_importance_padding_is_ignored():
  """Extra padded tokens outside every mask change nothing."""
  acts, attn, masks = make_case(7)
  rng = np.random.default_rng(8)
  L, T, F = acts.shape
  acts_p = np.concatenate([acts, rng.normal(size=(L, 3, F)).astype(np.float32) * 50], axis=1)
  attn_p = rng.random((L, T + 3, T + 3)).astype(np.float32)
  attn_p[:, :T, :T] = attn
  masks_p = np.concatenate([masks, np.zeros((7, 3), bool)], axis=1)
  np.testing.assert_allclose(np.asarray(miner.importance(acts_p, attn_p, masks_p)),
                             np.asarray(miner.importance(acts, attn, masks)), atol=1e-6)


def test_importance_all_equal_layer_long_sequence():
  """float32 summation noise over many tokens must not turn an all-equal layer into min-max noise."""
  rng = np.random.default_rng(9)
  L, T, F = 2, 300, 13
  acts = np.full((L, T, F), 0.3, np.float32)
  acts[1] = -0.2781
  attn = rng.random((L, T, T)).astype(np.float32)
  attn /= attn.sum(-1, keepdims=True)
  masks = rng.random((7, T)) < 0.5
  masks[3] = True
  assert np.all(np.asarray(miner.importance(acts, attn, masks)) == 0)
  # a genuine spread well above the tolerance is kept
  acts[0, :, 0] += 1e-3
  got = np.asarray(miner.importance(acts, attn, masks))
  np.testing.assert_allclose(got[1:, 3, 0, 0], 1.0, atol=1e-6)
  assert np.all(got[1:, 3, 0, 1:] == 0)


def test_importance_bad_shapes():
  acts, attn, masks = make_case(0)
  with pytest.raises(ValueError, match="attn"):
    miner.importance(acts, attn[:, :5], masks)
  with pytest.raises(ValueError, match="token_masks"):
    miner.importance(acts, attn, masks[:, :5])


# ============================================================================ stage 1

def test_token_masks_qwen2_vl():
  ids = np.array([VL["bos"], 10, 11, VL["eos"], VL["bos"], VL["vs"], VL["img"], VL["img"], VL["ve"],
                  VL["vid"], 12, VL["eos"], 0, 0])
  am = np.array([1] * 12 + [0, 0])
  got = np.asarray(miner.token_modality_masks(ids, qwen2_vl.TOKEN_IDS, am))
  assert got.shape == (7, 14) and got.dtype == bool
  idx = lambda *p: np.isin(np.arange(14), p)
  want = {
      "text": idx(1, 2, 10), "special": idx(0, 3, 4, 5, 8, 11), "image": idx(6, 7), "video": idx(9),
      "audio": idx(), "prompt": idx(*range(12)),
  }
  want["special_text"] = want["special"] | want["text"]
  for name, w in want.items():
    np.testing.assert_array_equal(got[miner.MODALITY_INDEX[name]], w, err_msg=name)
  # audio ids are plain text for Qwen2-VL
  got2 = np.asarray(miner.token_modality_masks(np.array([AU["aud"], AU["abos"]]), qwen2_vl.TOKEN_IDS))
  np.testing.assert_array_equal(got2[0], [True, True])


def test_token_masks_qwen2_audio_batched_and_override():
  ids = np.array([[AU["bos"], 7, AU["abos"], AU["aud"], AU["aud"], AU["aud"], AU["aeos"], 8, AU["eos"]],
                  [0, 0, AU["bos"], 9, AU["abos"], AU["aud"], AU["aeos"], VL["img"], AU["eos"]]])
  am = np.array([[1] * 9, [0, 0] + [1] * 7])
  got = np.asarray(miner.token_modality_masks(ids, qwen2_audio.TOKEN_IDS, attention_mask=am))
  assert got.shape == (7, 2, 9)
  M = miner.MODALITY_INDEX
  np.testing.assert_array_equal(got[M["audio"]], [[0, 0, 0, 1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 1, 0, 0, 0]])
  np.testing.assert_array_equal(got[M["special"]], [[1, 0, 1, 0, 0, 0, 1, 0, 1], [0, 0, 1, 0, 1, 0, 1, 0, 1]])
  np.testing.assert_array_equal(got[M["text"]], [[0, 1, 0, 0, 0, 0, 0, 1, 0], [0, 0, 0, 1, 0, 0, 0, 1, 0]])
  assert not got[M["image"]].any() and not got[M["video"]].any()
  np.testing.assert_array_equal(got[M["prompt"]], am.astype(bool))
  np.testing.assert_array_equal(got[M["special_text"]], got[M["special"]] | got[M["text"]])
  # every valid token is in exactly one of text / special / image / video / audio
  parts = got[[M["text"], M["special"], M["image"], M["video"], M["audio"]]].sum(0)
  np.testing.assert_array_equal(parts, am)
  # override: 7 becomes special; jit works
  fn = jax.jit(lambda x: miner.token_modality_masks(x, qwen2_audio.TOKEN_IDS, special_ids=(7,)))
  over = np.asarray(fn(ids))
  np.testing.assert_array_equal(over[M["special"], 0], ids[0] == 7)
  with pytest.raises(ValueError, match="token_ids"):
    miner.token_modality_masks(ids, "llava")
  with pytest.raises(ValueError, match="both"):
    miner.token_modality_masks(ids, qwen2_audio.TOKEN_IDS, image_ids=(AU["aud"],))


# ============================================================================ stage 3

def test_dataset_mean_aggregate_combine():
  rng = np.random.default_rng(0)
  shape = (5, 7, 3, 6)
  means = {d: rng.random(shape).astype(np.float32) for d in ("a", "b", "c")}
  present = {"a": np.array([1, 1, 1, 0, 0, 0, 1], bool), "b": np.array([1, 0, 1, 1, 0, 0, 1], bool),
             "c": np.array([1, 1, 0, 1, 0, 0, 1], bool)}
  got = miner.aggregate(means, present)
  want = np.zeros(shape)
  for m in range(7):
    ds = [d for d in means if present[d][m]]
    for d in ds:
      want[:, m] += means[d][:, m].astype(np.float64) / len(ds)
  np.testing.assert_allclose(got, want, atol=1e-6)
  assert np.all(got[:, 4] == 0) and np.all(got[:, 5] == 0)
  # present=None: a modality occurs where its scores are not all zero (the authors' rule)
  zeroed = {d: np.where(present[d][None, :, None, None], x, 0) for d, x in means.items()}
  np.testing.assert_allclose(miner.aggregate(zeroed), want, atol=1e-6)

  samples = rng.random((4,) + shape)
  np.testing.assert_allclose(miner.dataset_mean(samples), samples.mean(0), atol=1e-6)
  np.testing.assert_allclose(miner.dataset_mean(iter(list(samples))), samples.mean(0), atol=1e-6)

  assert len(miner.WEIGHT_PRESETS) == 10
  assert miner.WEIGHT_PRESETS["default"] == (0.0, 0.25, 0.25, 0.5, 0.0)
  np.testing.assert_allclose(miner.combine(got), np.einsum("k,kmlf->mlf", [0, .25, .25, .5, 0], want), atol=1e-6)
  w = [0.1, 0.2, 0.3, 0.4, 0.5]
  np.testing.assert_allclose(miner.combine(got, w), np.einsum("k,kmlf->mlf", w, want), atol=1e-6)
  np.testing.assert_allclose(miner.combine(got, "attn_q"), got[4], atol=1e-7)
  with pytest.raises(ValueError):
    miner.combine(got, "nope")

  names, sub = miner.split_modalities(miner.combine(got), "special_text_separate")
  assert names == ("text", "special", "image")           # video, audio never occur
  np.testing.assert_array_equal(sub, miner.combine(got)[[0, 1, 3]])


# ============================================================================ stage 4

CONFIGS = [(3, 4, 50, 0.3), (7, 3, 13, 1.0), (5, 6, 40, 0.1)]


@pytest.mark.parametrize("strategy", miner.STRATEGIES)
@pytest.mark.parametrize("M,L,F,ratio", CONFIGS)
def test_select_matches_reference(strategy, M, L, F, ratio):
  rng = np.random.default_rng(M * 100 + L)
  scores = rng.integers(0, 5, size=(M, L, F)).astype(np.float32)   # many ties
  got = miner.select(scores, ratio, strategy)
  want = ref_select(scores, ratio, strategy)
  assert got.shape == (M, L, F) and got.dtype == bool
  np.testing.assert_array_equal(got, want)
  K = int(ratio * L * F)
  if strategy == "LA_MU":
    np.testing.assert_array_equal(got.reshape(M, -1).sum(1), K // M)
  elif strategy == "LU_MA":
    np.testing.assert_array_equal(got.sum(axis=(0, 2)), K // L)
  elif strategy == "adaptive":
    assert got.sum() == K and got.sum(0).max() <= 1          # no overlap
  elif strategy == "uniform":
    np.testing.assert_array_equal(got.sum(2), K // (M * L))
  else:
    assert all(np.array_equal(got[0], got[m]) for m in range(M))
    assert 0 < got[0].sum() <= K


def test_select_real_valued_and_defaults():
  rng = np.random.default_rng(1)
  scores = rng.random((4, 5, 300)).astype(np.float32)
  for s in miner.STRATEGIES:
    np.testing.assert_array_equal(miner.select(scores, 0.02, s), ref_select(scores, 0.02, s))
  np.testing.assert_array_equal(miner.select(scores), ref_select(scores, 0.02, "LA_MU"))
  assert not np.array_equal(miner.select(scores, 0.02, "random", seed=1), miner.select(scores, 0.02, "random"))
  assert miner.budget(0.02, 28, 18944) == 10608 and miner.budget(0.02, 32, 11008) == 7045
  with pytest.raises(ValueError):
    miner.select(scores, 0.02, "nope")
  with pytest.raises(ValueError):
    miner.select(scores, 0.0)


def test_random_strategy_is_the_authors_draws():
  """Qwen2-VL shape (L=28, N=18944, K=10608): the same (layer, neuron) list, in order, with repeats."""
  import random
  random.seed(7)
  before = random.random()
  random.seed(7)
  layers, neurons = miner.random_draws(10608, 28, 18944, seed=2024)
  assert random.random() == before                                # the global state is untouched
  want = authors_random(10608, 28, 18944)
  assert list(zip(layers.tolist(), neurons.tolist())) == want
  got = miner.select(np.zeros((3, 28, 18944), np.float32), 0.02, "random")
  assert got[0].sum() == len(set(want)) and all(got[0, l, j] for l, j in want[:50])


def ref_combination_overlap(neurons_by_modality, L):
  """huang-kc/MINER utils/func.py:135-157 (analyse_modality_specific_neurons) in plain Python:
  {modality: [(layer, neuron)]} -> {combo name: [count per layer] + [total]}."""
  from itertools import combinations
  mods = list(neurons_by_modality)
  combos = [c for i in range(1, len(mods) + 1) for c in combinations(mods, i)]
  table = {}
  for combo in combos:
    rows = []
    for layer in range(L):
      if len(combo) == 1:
        rows.append(sum(1 for l, _ in neurons_by_modality[combo[0]] if l == layer))
      else:
        per = [set(n for l, n in neurons_by_modality[m] if l == layer) for m in combo]
        rows.append(len(set.intersection(*per)))
    table["-".join(combo)] = rows + [sum(rows)]
  return table


@pytest.mark.parametrize("M", [1, 3, 4])
def test_combination_overlap_matches_authors_table(M):
  rng = np.random.default_rng(M)
  names = ["text", "special", "image", "video"][:M]
  sel = rng.random((M, 5, 30)) < 0.4
  combos, counts = miner.combination_overlap(sel, names)
  ref = ref_combination_overlap({n: [(l, j) for l, j in zip(*np.nonzero(sel[i]))] for i, n in enumerate(names)}, 5)
  assert combos == list(ref) and len(combos) == 2 ** M - 1
  for c, row in zip(combos, counts):
    assert row.tolist() + [int(row.sum())] == ref[c]


def test_deactivation_masks_and_overlap():
  sel = np.zeros((3, 2, 5), bool)
  sel[0, 0, [0, 1]] = True
  sel[1, 0, [1, 2]] = True
  sel[2, 1, [4]] = True
  scale, offset = miner.deactivation_masks(sel)
  np.testing.assert_array_equal(scale, [[0, 0, 0, 1, 1], [1, 1, 1, 1, 0]])
  assert not offset.any() and scale.dtype == np.float32
  scale, _ = miner.deactivation_masks(sel, modalities=[1], complement=True)
  np.testing.assert_array_equal(scale, [[0, 1, 1, 0, 0], [0, 0, 0, 0, 0]])  # keep only the selected
  scale, offset = miner.deactivation_masks(sel, modalities=[0], value="min", acts_min=np.array([-0.2, -0.1]))
  act = np.full((2, 5), 3.0)
  np.testing.assert_allclose(act * scale + offset, [[-0.2, -0.2, 3, 3, 3], [3, 3, 3, 3, 3]], atol=1e-7)
  with pytest.raises(ValueError, match="acts_min"):
    miner.deactivation_masks(sel, value="min")
  table = miner.overlap_table(sel)
  assert table.shape == (3, 3, 2)
  want = np.zeros((3, 3, 2), int)
  for a in range(3):
    for b in range(3):
      for l in range(2):
        want[a, b, l] = sum(1 for j in range(5) if sel[a, l, j] and sel[b, l, j])
  np.testing.assert_array_equal(table, want)
