"""MINER sweeps (`analysis/miner_sweep.py`, `tasks/miner/sweep.py`, `tasks/miner/snapshots.py`) against
a plain-numpy reproduction of the authors' code (huang-kc/MINER): ISM_aggregate.py (each dataset's
ISM_<n>.npy sum / n, summed, each modality divided by the number of datasets where it is non-zero,
modalities that never occur dropped; a missing ISM_<n>.npy skipped) and utils/func.py's selection
(weights over [prob, mean, max, attn_k, attn_q], K = int(ratio * L * N), torch.topk per strategy, neurons
as (layer, neuron) lists), with Jaccard over Python sets of those tuples. Random scores have no ties,
so the stable sort here and torch.topk pick the same neurons. Exact equality of the sets; aggregated
scores to rtol 1e-6 (`miner.aggregate` returns float32, the reproduction is float64).

Also: the stage-2 plan cuts batches at the snapshot counts, and the snapshot writer (the `stop`
hook of `accumulate`) saves exactly the sums of the first n samples, unchanged by a crash + resume.
"""
import ml_collections
import numpy as np
import pytest

from mmneuron_jax.analysis import miner, miner_sweep
from mmneuron_jax.io.accumulate import accumulate
from mmneuron_jax.io.stats_store import StatsStore
from mmneuron_jax.tasks.miner import scores as miner_scores, snapshots as miner_snapshots
from mmneuron_jax.tasks.miner import sweep as sweep_task

STORED = ("text", "special", "image", "video", "audio")
L, F = 4, 50


# ----------------------------------------------------------------------------- the authors' code in numpy

def authors_aggregate(isms):
  """[(sample_num, ISM float[5, M, L, F] sum)] -> (modality names kept, float[5, M', L, F]) like ISM_aggregate.py."""
  lst = [ism / n for n, ism in isms]
  total = sum(lst)
  for ind in range(total.shape[1]):
    count = sum(int(x[:, ind].sum() != 0) for x in lst)
    if count:
      total[:, ind] /= count
  keep = [i for i in range(total.shape[1]) if total[:, i].sum() != 0]
  return [STORED[i] for i in keep], total[:, keep]


def topk(x, k):
  return np.argsort(-x.reshape(-1), kind="stable")[:k]


def authors_select(names, ism, ratio, weights, strategy):
  """utils/func.py select_modality_neurons_from_importance_scores -> {modality: [(layer, neuron)]}."""
  w = np.asarray(weights, np.float64).reshape(5, 1, 1, 1)
  weighted = (ism * w).sum(0)
  M, N = len(names), ism.shape[-1]
  K = int(ratio * L * N)
  out = {m: [] for m in names}
  if strategy == "LA_MU":
    for i, m in enumerate(names):
      out[m] += [(int(j // N), int(j % N)) for j in topk(weighted[i], K // M)]
  elif strategy == "LU_MA":
    for layer in range(L):
      for j in topk(weighted[:, layer], K // L):
        out[names[j // N]].append((layer, int(j % N)))
  elif strategy == "uniform":
    for layer in range(L):
      for i, m in enumerate(names):
        matrix = np.zeros((L, N))
        matrix[layer] = weighted[i, layer]
        out[m] += [(int(j // N), int(j % N)) for j in topk(matrix, K // (M * L))]
  elif strategy == "adaptive":
    total = weighted.sum(0)
    for j in topk(total, K):
      row, col = int(j // N), int(j % N)
      best, value = None, -np.inf
      for i, m in enumerate(names):
        if weighted[i, row, col] > value:
          best, value = m, weighted[i, row, col]
      out[best].append((row, col))
  return out


def set_jaccard(a, b):
  a, b = set(a), set(b)
  return None if not (a | b) else len(a & b) / len(a | b)


def as_lists(mask, names):
  return {m: [(int(l), int(j)) for l, j in zip(*np.nonzero(mask[i]))] for i, m in enumerate(names)}


# ----------------------------------------------------------------------------- random stage-2 sums

def random_sums(rng, n, present):
  """Per-sample scores in [0, 1] (zeros for absent modalities) summed over n samples."""
  per = rng.random((n, 5, len(STORED), L, F)) * np.asarray(present, float)[None, None, :, None, None]
  return per


def dataset(rng, n, present):
  per = random_sums(rng, n, present)
  cum = np.cumsum(per, axis=0)
  def sums(k):
    return {"score_sum": cum[k - 1], "present": np.asarray(present, np.int64) * k, "samples": np.array([k]),
            "tokens": np.zeros(len(STORED), np.int64)}
  return sums


@pytest.fixture(scope="module")
def data():
  rng = np.random.default_rng(0)
  # three datasets like Qwen2-VL's: image+text, image+text, text only (video / audio never occur)
  spec = {"vqa": (30, [1, 1, 1, 0, 0]), "caption": (12, [1, 1, 1, 0, 0]), "mmlu": (60, [1, 1, 0, 0, 0])}
  makers = {d: dataset(rng, n, p) for d, (n, p) in spec.items()}
  finals = {d: makers[d](spec[d][0]) for d in spec}
  counts = (10, 25, 50)
  snaps = {d: {c: makers[d](c) for c in counts if c <= spec[d][0]} for d in spec}
  return finals, snaps, counts


def test_aggregate_matches_authors(data):
  finals, _, _ = data
  agg, agg_grad, used = miner_sweep.aggregate_sums(finals)
  names, ref = authors_aggregate([(int(t["samples"][0]), t["score_sum"].copy()) for t in finals.values()])
  assert agg_grad is None
  assert [m for m, u in zip(STORED, used) if u] == names == ["text", "special", "image"]
  np.testing.assert_allclose(agg[:, used], ref, rtol=1e-6, atol=0)  # miner.aggregate returns float32


@pytest.mark.parametrize("strategy", ["LA_MU", "LU_MA", "uniform", "adaptive"])
def test_grid_matches_authors(data, strategy):
  """Every point of the ratio and weight grids (the authors' lists) at one strategy, selection only."""
  finals, _, _ = data
  agg, agg_grad, used = miner_sweep.aggregate_sums(finals)
  names, ref = authors_aggregate([(int(t["samples"][0]), t["score_sum"].copy()) for t in finals.values()])
  config = ml_collections.ConfigDict(dict(
      select=dict(ratio=0.05, weights="default", strategy=strategy, seed=2024, grad_weight=0.0),
      sweep=dict(ratios=miner_sweep.RATIOS, weights=tuple(miner.WEIGHT_PRESETS), strategies=(strategy,),
                 deactivate=False)))
  final = miner.select(miner_sweep.combined(agg, None, "default")[used], 0.05, strategy)
  rows = sweep_task.grid(config, agg, agg_grad, used, STORED, final, names, run_eval=None)
  assert [r["axis"] for r in rows] == ["ratio"] * 7 + ["weights"] * 10 + ["strategy"]
  final_lists = authors_select(names, ref, 0.05, miner.WEIGHT_PRESETS["default"], strategy)
  for r in rows:
    weights = miner.WEIGHT_PRESETS[r["weights"]]
    want = authors_select(names, ref, r["ratio"], weights, strategy)
    assert r["K"] == int(r["ratio"] * L * F)
    assert r["sizes"] == {m: len(set(v)) for m, v in want.items()}, r["key"]
    union = set().union(*want.values())
    assert r["union"] == len(union)
    assert r["jaccard_vs_chosen"]["union"] == set_jaccard(union, set().union(*final_lists.values())), r["key"]
    for m in names:
      assert r["jaccard_vs_chosen"][m] == set_jaccard(want[m], final_lists[m]), (r["key"], m)


@pytest.mark.parametrize("short", ["skip", "full"])
def test_convergence_matches_authors(data, short):
  """Snapshot counts 10 / 25 / 50: the authors aggregate the datasets that have ISM_<n> (skip), or
  ('full') the short ones whole; LA_MU sets per count vs the final sets, Jaccard per modality."""
  finals, snaps, counts = data
  agg, _, used = miner_sweep.aggregate_sums(finals)
  names_f, ref_f = authors_aggregate([(int(t["samples"][0]), t["score_sum"].copy()) for t in finals.values()])
  final_lists = authors_select(names_f, ref_f, 0.05, miner.WEIGHT_PRESETS["default"], "LA_MU")
  final = miner.select(miner_sweep.combined(agg, None, "default")[used], 0.05, "LA_MU")
  rows = miner_sweep.convergence(snaps, finals, final, names_f, STORED, counts, weights="default", ratio=0.05,
                                 strategy="LA_MU", seed=2024, short=short)
  assert [r["samples"] for r in rows] == list(counts)
  for r, c in zip(rows, counts):
    isms, used_d = [], []
    for d, t in finals.items():
      if c in snaps[d]:
        isms.append((c, snaps[d][c]["score_sum"].copy()))
        used_d.append(d)
      elif short == "full":
        isms.append((int(t["samples"][0]), t["score_sum"].copy()))
        used_d.append(d)
    names, ref = authors_aggregate(isms)
    want = authors_select(names, ref, 0.05, miner.WEIGHT_PRESETS["default"], "LA_MU")
    assert r["datasets"] == used_d and r["modalities"] == names
    for m in set(names) | set(names_f):
      exp = set_jaccard(want[m], final_lists[m]) if m in names and m in names_f else None
      assert r["jaccard"][m] == exp, (c, m)
    assert r["jaccard"]["union"] == set_jaccard(set().union(*want.values()), set().union(*final_lists.values()))
  # 50 samples: only mmlu (text only) has a snapshot, so 'skip' has no image set
  assert rows[-1]["modalities"] == (["text", "special"] if short == "skip" else ["text", "special", "image"])


def test_missing_snapshot_refuses(data):
  finals, snaps, _ = data
  partial = {d: {k: v for k, v in s.items() if k != 10} for d, s in snaps.items()}
  with pytest.raises(ValueError, match="no snapshot at 10"):
    miner_sweep.snapshot_sums(partial, finals, 10)


def test_plan_cuts_at_snapshot_counts():
  plan = miner_scores.plan(11, 4, cuts=(2, 4, 10, 11, 50))
  assert [p.indices for p in plan] == [(0, 1), (2, 3), (4, 5, 6, 7), (8, 9), (10,)]
  assert [p.number for p in plan] == list(range(5))
  assert [p.indices for p in miner_scores.plan(9, 4)] == [(0, 1, 2, 3), (4, 5, 6, 7), (8,)]


def test_snapshot_writer_resumes_exactly(tmp_path):
  """accumulate + the snapshot hook over a fake step: each snapshot equals the sum of the first n
  samples; a run that fails after the snapshot at 4 resumes (from what it committed) to the same files."""
  rng = np.random.default_rng(1)
  per = rng.random((9, 3))
  spec = {"score_sum": ((3,), "float64"), "samples": ((1,), "int64")}
  plan = miner_scores.plan(9, 3, cuts=(2, 4, 8))
  counts = miner_scores.snapshot_counts(ml_collections.ConfigDict({"snapshots": (2, 4, 8, 100)}), 9)
  assert counts == (2, 4, 8)
  step = lambda b: {"score_sum": per[list(b.indices)].sum(0), "samples": np.array([len(b.indices)])}
  workdir = str(tmp_path)
  store = StatsStore.open_or_create(str(tmp_path / "store"), spec, "fp")
  hook = miner_snapshots.writer(workdir, "d", counts, "fp")

  class Crash(Exception):
    pass

  def crashing(b):
    if b.number == 3:  # the batch ending at 8 (batches end at 2, 4, 7, 8, 9)
      raise Crash
    return step(b)

  with pytest.raises(Crash):
    accumulate(store, ((b.number + 1, b) for b in plan), crashing, commit_every=10, progress=False, stop=hook)
  first = miner_snapshots.load(workdir, "d", counts, "fp")
  assert sorted(first) == [2, 4]
  store = StatsStore.open_or_create(str(tmp_path / "store"), spec, "fp")
  totals = accumulate(store, ((b.number + 1, b) for b in plan), step, commit_every=1, progress=False, stop=hook)
  np.testing.assert_allclose(totals["score_sum"], per.sum(0), rtol=1e-15)
  snaps = miner_snapshots.load(workdir, "d", counts, "fp")
  for n in counts:
    np.testing.assert_allclose(snaps[n]["score_sum"], per[:n].sum(0), rtol=1e-15)
    assert int(snaps[n]["samples"][0]) == n
  for n in (2, 4):
    np.testing.assert_array_equal(snaps[n]["score_sum"], first[n]["score_sum"])
  with pytest.raises(ValueError, match="fingerprint"):
    miner_snapshots.load(workdir, "d", counts, "other")
