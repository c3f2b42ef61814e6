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
  """Top-k (value, sample, position) per group and column, plus counts above histogram edges.

  groups int32[...tokens] group of each token (-1 = not counted); sample / position
  int32[...tokens] the token's global sample id and its position within that sample;
  cols int32[K] neuron columns; edges float32[E] histogram edges.
  __call__(acts float[...tokens, F]) -> {'value': float32[G, K, k] (-inf where fewer than k
  tokens), 'sample' / 'position': int32[G, K, k], 'above': int32[G, K, E] (tokens with
  act > edge), 'tokens': int32[G]}.
  """
  groups: jax.Array
  sample: jax.Array
  position: jax.Array
  cols: jax.Array
  edges: jax.Array
  num_groups: int = flax.struct.field(pytree_node=False)
  k: int = flax.struct.field(pytree_node=False)

  def __call__(self, acts):
    a = jnp.take(acts.reshape(-1, acts.shape[-1]), self.cols, axis=1).astype(jnp.float32)  # [N, K]
    groups = self.groups.reshape(-1)
    sample, position = self.sample.reshape(-1), self.position.reshape(-1)
    k = min(self.k, a.shape[0])
    values, samples, positions = [], [], []
    for g in range(self.num_groups):
      v, idx = jax.lax.top_k(jnp.where(groups[None] == g, a.T, -jnp.inf), k)  # [K, k]
      values.append(v)
      samples.append(jnp.where(jnp.isfinite(v), sample[idx], -1))
      positions.append(jnp.where(jnp.isfinite(v), position[idx], -1))
    pad = ((0, 0), (0, 0), (0, self.k - k))
    onehot = (groups[:, None] == jnp.arange(self.num_groups)[None]).astype(jnp.float32)  # [N, G]
    hi = jax.lax.Precision.HIGHEST
    above = jnp.stack([jnp.einsum("ng,nk->gk", onehot, (a > e).astype(jnp.float32), precision=hi)
                       for e in self.edges], axis=-1)
    return {"value": jnp.pad(jnp.stack(values), pad, constant_values=-jnp.inf),
            "sample": jnp.pad(jnp.stack(samples), pad, constant_values=-1),
            "position": jnp.pad(jnp.stack(positions), pad, constant_values=-1),
            "above": jnp.round(above).astype(jnp.int32),
            "tokens": jnp.sum(onehot, axis=0).astype(jnp.int32)}


@flax.struct.dataclass
class ColumnProbe:
  """cols int32[K] -> acts float32[N, K] of those columns at every token (flattened in the
  module's token order); stacked by the scan to [L, N, K]. For a few samples at a time."""
  cols: jax.Array

  def __call__(self, acts):
    return jnp.take(acts.reshape(-1, acts.shape[-1]), self.cols, axis=1).astype(jnp.float32)
