"""GroupStats on bf16 activations (tensor-core path) equals a float64 numpy reference."""
import jax.numpy as jnp
import numpy as np

from mmneuron_jax.nn.probes import GroupStats


def _reference(a, groups, g):
  a = a.astype(np.float64)
  out = {k: np.zeros((g, a.shape[-1])) for k in ("count", "sum", "sumsq")}
  for n, gid in enumerate(groups):
    if gid < 0:
      continue
    out["count"][gid] += a[n] > 0
    out["sum"][gid] += a[n]
    out["sumsq"][gid] += a[n] ** 2
  return out, np.bincount(groups[groups >= 0], minlength=g)


def test_bf16_group_stats_match_float64():
  rng = np.random.default_rng(0)
  n, f, g = 300, 37, 4
  a = jnp.asarray(rng.normal(size=(n, f)) * 3, jnp.bfloat16)
  groups = rng.integers(-1, g, n).astype(np.int32)
  out = GroupStats(jnp.asarray(groups), g)(a)
  ref, tokens = _reference(np.asarray(a.astype(jnp.float32)), groups, g)
  np.testing.assert_array_equal(np.asarray(out["count"]), ref["count"])
  np.testing.assert_array_equal(np.asarray(out["tokens"]), tokens)
  # every product is exact; only the float32 summation order differs from float64
  np.testing.assert_allclose(np.asarray(out["sum"]), ref["sum"], rtol=0, atol=1e-5 * np.abs(ref["sum"]).max())
  np.testing.assert_allclose(np.asarray(out["sumsq"]), ref["sumsq"], rtol=1e-6)
  # and the float32 path (the same activations upcast) agrees
  out32 = GroupStats(jnp.asarray(groups), g)(a.astype(jnp.float32))
  np.testing.assert_array_equal(np.asarray(out32["count"]), np.asarray(out["count"]))
  np.testing.assert_allclose(np.asarray(out32["sumsq"]), np.asarray(out["sumsq"]), rtol=1e-6)
