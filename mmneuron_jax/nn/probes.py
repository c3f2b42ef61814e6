"""In-scan reductions of neuron activations, so full activations are never materialised.

A probe is a pytree with `__call__(acts float[..., F]) -> pytree`; the token axes of `acts`
match the probe's own arrays (e.g. `[B, T]` for the LLM, `[N, P]` for vision tiles).
Its result is stacked over layers by the scan: `[L, ...]`. A probe that also reads the layer's
attention subclasses `QKProbe`.
"""
import flax.struct
import jax
import jax.numpy as jnp


class QKProbe:
  """Base of the probes that read the layer's attention: the decoder calls them as
  `probe(acts float[B, T, F], q=float[B, T, H, hd], k=float[B, T, K, hd])` with the layer's
  post-RoPE queries and keys (e.g. MINER's in-scan scores); any other probe as `probe(acts)`."""


@flax.struct.dataclass
class GroupStats:
  """Per-group neuron statistics: counts of act > 0, sums, sums of squares, token counts, and
  the number of non-finite activations (NaN / Inf) among the counted tokens.

  groups: int32[...tokens] group id of each token (domain, modality...); -1 = not counted
    (padding, positions outside the chosen scope).
  Returns {'count': int32[G, F], 'sum': float32[G, F], 'sumsq': float32[G, F], 'tokens': int32[G],
  'nonfinite': int32[]}. Counts are exact as long as a batch holds < 2**24 tokens of one group.
  A NaN compares false with 0, so it would count as "never active": `analysis.finite` refuses a
  batch whose `nonfinite` is not 0 (the sums alone would miss it when they are not kept).
  """
  groups: jax.Array
  num_groups: int = flax.struct.field(pytree_node=False)

  def __call__(self, acts):
    f = acts.shape[-1]
    onehot = self.groups.reshape(-1)[:, None] == jnp.arange(self.num_groups)[None]
    tokens = jnp.sum(onehot, axis=0, dtype=jnp.int32)
    counted = jnp.any(onehot, axis=1)[:, None]
    nonfinite = jnp.sum(counted & ~jnp.isfinite(acts.reshape(-1, f)), dtype=jnp.int32)
    if acts.dtype == jnp.bfloat16:
      return dict(_bf16_sums(acts.reshape(-1, f), onehot), tokens=tokens, nonfinite=nonfinite)
    a = acts.reshape(-1, f).astype(jnp.float32)
    onehot = onehot.astype(jnp.float32)
    hi = jax.lax.Precision.HIGHEST
    count = jnp.einsum("ng,nf->gf", onehot, (a > 0).astype(jnp.float32), precision=hi)
    return {
        "count": jnp.round(count).astype(jnp.int32),
        "sum": jnp.einsum("ng,nf->gf", onehot, a, precision=hi),
        "sumsq": jnp.einsum("ng,nf->gf", onehot, a * a, precision=hi),
        "tokens": tokens,
        "nonfinite": nonfinite,
    }


def _bf16_sums(a, onehot):
  """bf16 a[N, F], bool onehot[N, G] -> count / sum / sumsq [G, F] with bf16 tensor-core matmuls
  and float32 accumulation, every product exact: one-hot x a is a itself, and a*a (at most 16
  significant bits for a bf16 a) is split exactly into bf16 hi + lo. Equal to the float32
  path up to the order of the float32 additions; about half its memory traffic."""
  oh = onehot.astype(jnp.bfloat16)
  mm = lambda x: jnp.einsum("ng,nf->gf", oh, x, preferred_element_type=jnp.float32)
  sq = jnp.square(a.astype(jnp.float32))
  sq_hi = sq.astype(jnp.bfloat16)
  sq_lo = (sq - sq_hi.astype(jnp.float32)).astype(jnp.bfloat16)
  return {"count": jnp.round(mm((a > 0).astype(jnp.bfloat16))).astype(jnp.int32), "sum": mm(a),
          "sumsq": mm(sq_hi) + mm(sq_lo)}
