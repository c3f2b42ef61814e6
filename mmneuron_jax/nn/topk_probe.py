"""In-scan probes for the neuron atlas: per-group top-k activating tokens and histograms of a
chosen subset of neuron columns, and a column capture for re-reading a few samples.

The layer scan passes the same probe to every layer, so a probe picks the same columns at every
layer: `cols` int32[K] is the union over layers of the chosen neurons' indices; the host keeps
the (layer, column) pairs it wants from the stacked `[L, ...]` results.
"""
import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TopKProbe:
  """Top-k samples (value, sample, position) per group and column, plus counts above histogram
  edges. A sample counts once per list, with its highest-activating token of that group.

  groups int32[...tokens] group of each token (-1 = not counted); sample / position
  int32[...tokens] the token's global sample id and its position within that sample; row
  int32[...tokens] the sample's row in the batch, in [0, rows) (-1 = padding); cols int32[K]
  neuron columns; edges float32[E] histogram edges.
  __call__(acts float[...tokens, F]) -> {'value': float32[G, K, k] (-inf where fewer than k
  samples), 'sample' / 'position': int32[G, K, k] (-1 there), 'above': int32[G, K, E] (tokens
  with act > edge), 'tokens': int32[G], 'nonfinite': int32[] (NaN / Inf among the counted tokens'
  columns: a NaN is never "above" an edge nor a top value; `analysis.finite` refuses it)}.
  Ties: the first token of a sample, the lower row.
  """
  groups: jax.Array
  sample: jax.Array
  position: jax.Array
  row: jax.Array
  cols: jax.Array
  edges: jax.Array
  num_groups: int = flax.struct.field(pytree_node=False)
  k: int = flax.struct.field(pytree_node=False)
  rows: int = flax.struct.field(pytree_node=False)

  def __call__(self, acts):
    a = jnp.take(acts.reshape(-1, acts.shape[-1]), self.cols, axis=1).astype(jnp.float32)  # [N, K]
    n = a.shape[0]
    groups = self.groups.reshape(-1)
    sample, position = self.sample.reshape(-1), self.position.reshape(-1)
    row = jnp.where(self.row.reshape(-1) >= 0, self.row.reshape(-1), self.rows)  # padding -> an extra segment
    token = jnp.arange(n)
    k = min(self.k, self.rows)
    values, samples, positions = [], [], []
    for g in range(self.num_groups):
      v = jnp.where((groups == g)[:, None], a, -jnp.inf)
      best = jax.ops.segment_max(v, row, self.rows + 1)  # [rows + 1, K]
      hit = (v == best[row]) & jnp.isfinite(v)
      first = jax.ops.segment_min(jnp.where(hit, token[:, None], n), row, self.rows + 1)  # [rows + 1, K]
      top, idx = jax.lax.top_k(best[:self.rows].T, k)  # [K, k] over samples
      tok = jnp.clip(jnp.take_along_axis(first[:self.rows].T, idx, 1), 0, n - 1)
      ok = jnp.isfinite(top)
      values.append(jnp.where(ok, top, -jnp.inf))
      samples.append(jnp.where(ok, sample[tok], -1))
      positions.append(jnp.where(ok, position[tok], -1))
    pad = ((0, 0), (0, 0), (0, self.k - k))
    onehot = (groups[:, None] == jnp.arange(self.num_groups)[None]).astype(jnp.float32)  # [N, G]
    hi = jax.lax.Precision.HIGHEST
    above = jnp.stack([jnp.einsum("ng,nk->gk", onehot, (a > e).astype(jnp.float32), precision=hi)
                       for e in self.edges], axis=-1)
    return {"value": jnp.pad(jnp.stack(values), pad, constant_values=-jnp.inf),
            "sample": jnp.pad(jnp.stack(samples), pad, constant_values=-1),
            "position": jnp.pad(jnp.stack(positions), pad, constant_values=-1),
            "above": jnp.round(above).astype(jnp.int32),
            "tokens": jnp.sum(onehot, axis=0).astype(jnp.int32),
            "nonfinite": jnp.sum((onehot.sum(1) > 0)[:, None] & ~jnp.isfinite(a), dtype=jnp.int32)}


@flax.struct.dataclass
class ColumnProbe:
  """cols int32[K] -> acts float32[N, K] of those columns at every token (flattened in the
  module's token order); stacked by the scan to [L, N, K]. For a few samples at a time."""
  cols: jax.Array

  def __call__(self, acts):
    return jnp.take(acts.reshape(-1, acts.shape[-1]), self.cols, axis=1).astype(jnp.float32)
