"""MINER Finding IV measures (`analysis/miner_semantics.py`) against plain Python loops on random token
states: nearest-neighbour shares (cosine, within each sample), their chance level, and the PCA picture
(numpy's SVD vs an eigendecomposition of the covariance). Shares exact; PCA to 1e-8."""
import numpy as np

from mmneuron_jax.analysis import miner_semantics


def loop_shares(h, labels, owners, A):
  counts = np.zeros((A, A))
  for i in range(len(h)):
    best, sim = None, -np.inf
    for j in range(len(h)):
      if j == i or owners[j] != owners[i]:
        continue
      s = float(h[i] @ h[j] / (np.linalg.norm(h[i]) * np.linalg.norm(h[j])))
      if s > sim:
        best, sim = j, s
    if best is not None:
      counts[labels[i], labels[best]] += 1
  total = counts.sum(1, keepdims=True)
  return np.where(total > 0, counts / np.maximum(total, 1), np.nan)


def loop_chance(labels, owners, A):
  rows = {a: [] for a in range(A)}
  for i in range(len(labels)):
    others = [labels[j] for j in range(len(labels)) if j != i and owners[j] == owners[i]]
    if others:
      rows[labels[i]].append([others.count(b) / len(others) for b in range(A)])
  return np.array([np.mean(rows[a], axis=0) if rows[a] else [np.nan] * A for a in range(A)])


def test_shares_and_chance_match_loops():
  rng = np.random.default_rng(0)
  n = 60
  h = rng.normal(size=(n, 8))
  labels = rng.integers(0, 3, n)                   # modality 3 of 4 never occurs
  owners = rng.integers(0, 4, n)
  owners[0] = 9                                    # a sample with one token: no neighbour
  got = miner_semantics.nearest_neighbour_shares(h, labels, owners, 4)
  np.testing.assert_array_equal(np.isnan(got), np.isnan(loop_shares(h, labels, owners, 4)))
  np.testing.assert_allclose(got, loop_shares(h, labels, owners, 4), atol=1e-15)
  assert np.isnan(got[3]).all()
  np.testing.assert_allclose(miner_semantics.chance_shares(labels, owners, 4), loop_chance(labels, owners, 4),
                             atol=1e-12)


def test_pca2_is_the_leading_covariance_axes():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(50, 6)) * np.array([5.0, 3.0, 1.0, 0.5, 0.2, 0.1])
  got = miner_semantics.pca2(x)
  c = x - x.mean(0)
  w, v = np.linalg.eigh(c.T @ c)
  v = v[:, ::-1][:, :2]
  v = v * np.sign(v[np.abs(v).argmax(0), [0, 1]])
  np.testing.assert_allclose(got, c @ v, atol=1e-8)
