"""MINER Finding IV readings (`analysis/miner_semantics.py`) on hand-built sets and masses, against
plain Python counts (exact)."""
import numpy as np
import pytest

from mmneuron_jax.analysis import miner_semantics


def test_telomeres_counts_the_ends():
  rng = np.random.default_rng(0)
  sel = rng.random((2, 10, 30)) < 0.2
  sel[1] = False                                                   # an empty set
  out = miner_semantics.telomeres(sel, ["text", "image"], edge=0.2)
  n = 2                                                            # round(0.2 * 10)
  first = sum(int(sel[0, l, j]) for l in range(n) for j in range(30))
  last = sum(int(sel[0, l, j]) for l in range(10 - n, 10) for j in range(30))
  size = int(sel[0].sum())
  t = out["text"]
  assert (t["first"], t["last"], t["size"], t["edge_layers"]) == (first, last, size, n)
  assert t["share"] == (first + last) / size and t["uniform_share"] == 0.4
  assert t["ratio"] == t["share"] / 0.4
  assert out["image"]["share"] is None and out["image"]["ratio"] is None
  assert miner_semantics.telomeres(sel, ["text", "image"], edge=3)["text"]["edge_layers"] == 3


def test_edge_is_validated():
  assert miner_semantics.edge_layers(3, 0.1) == 1                  # at least one layer
  with pytest.raises(ValueError, match="edge="):
    miner_semantics.edge_layers(4, 3)
  with pytest.raises(ValueError, match="bool"):
    miner_semantics.telomeres(np.zeros((2, 4, 5), bool), ["text"])


def test_probing_is_own_condition_minus_none():
  mass = {"none": [[0.5, 0.2], [0.4, 0.3]], "image": [[0.5, 0.25], [0.3, 0.1]], "all": [[0.1, 0.1], [0.1, 0.1]]}
  out = miner_semantics.probing(mass, ["text", "image"], present={"text": 2, "image": 2})
  assert set(out) == {"image"}                                     # 'text' has no condition of its own here
  np.testing.assert_allclose(out["image"], [0.05, -0.2], atol=1e-15)
  assert miner_semantics.probing(mass, ["text", "image"], present={"image": 0}) == {}
  with pytest.raises(ValueError, match="none"):
    miner_semantics.probing({"image": [[0.0, 0.0]]}, ["text", "image"])
