"""Multi-head / grouped-query attention with an optional KV cache."""
import flax.linen as nn
import jax
import jax.numpy as jnp

from mmneuron_jax.nn.layers import Dense
from mmneuron_jax.nn.policy import Policy
from mmneuron_jax.nn.rope import apply_rope

NEG_INF = float(jnp.finfo(jnp.float32).min)


def mask_to_bias(allowed):
  """bool[B, T, S] -> additive float32[B, T, S] (HF eager: finfo.min where masked)."""
  return jnp.where(allowed, 0.0, NEG_INF).astype(jnp.float32)


def causal_allowed(kv_valid, q_index, sliding_window=None):
  """kv_valid bool[B, S], q_index int[T] (sequence index of each query) -> bool[B, T, S].

  Causality is by index (as HF's cache_position), not by position id.
  """
  kv_index = jnp.arange(kv_valid.shape[1])
  allowed = kv_index[None, :] <= q_index[:, None]
  if sliding_window is not None:
    allowed &= kv_index[None, :] > q_index[:, None] - sliding_window
  return allowed[None] & kv_valid[:, None, :]


def attend(q, k, v, bias, precision, impl: str = "xla"):
  """q float[B, T, H, hd], k/v float[B, S, K, hd], bias float32[B, T, S] or None.

  Returns (out float[B, T, H*hd], probs float32[B, H, T, S]); impl='cudnn' runs fused flash
  attention and returns probs=None (nothing downstream may need them).
  """
  b, t, h, hd = q.shape
  if impl == "cudnn":
    bias4 = None if bias is None else bias[:, None].astype(q.dtype)
    out = jax.nn.dot_product_attention(q, k, v, bias=bias4, scale=hd ** -0.5, implementation="cudnn")
    return out.reshape(b, t, h * hd), None
  kv_heads = k.shape[2]
  qg = q.reshape(b, t, kv_heads, h // kv_heads, hd)
  scores = jnp.einsum("btkgd,bskd->bkgts", qg, k, precision=precision) * (hd ** -0.5)
  scores = scores.astype(jnp.float32)
  if bias is not None:
    scores = scores + bias[:, None, None]
  probs = jax.nn.softmax(scores, axis=-1)
  out = jnp.einsum("bkgts,bskd->btkgd", probs.astype(v.dtype), v, precision=precision)
  return out.reshape(b, t, h * hd), probs.reshape(b, h, t, -1)


class SelfAttention(nn.Module):
  """q/k/v/o projections; RoPE when cos/sin are given; GQA when num_kv_heads < num_heads."""
  num_heads: int
  num_kv_heads: int
  head_dim: int
  qkv_bias: bool = False
  out_bias: bool = False
  policy: Policy = Policy()

  @nn.compact
  def __call__(self, x, bias, cos=None, sin=None, cache=None, cache_index=None):
    """x float[B, T, D]; cache {'k','v': float[B, S, K, hd]} written at `cache_index`.

    Returns (y float[B, T, D], aux) with aux['k'], aux['v'] the (updated) keys/values,
    aux['q'] float[B, T, H, hd] the post-RoPE queries and aux['probs'] the (masked) probabilities.
    """
    b, t, d = x.shape
    p = self.policy
    q = Dense(self.num_heads * self.head_dim, self.qkv_bias, p, name="q")(x)
    k = Dense(self.num_kv_heads * self.head_dim, self.qkv_bias, p, name="k")(x)
    v = Dense(self.num_kv_heads * self.head_dim, self.qkv_bias, p, name="v")(x)
    q = q.reshape(b, t, self.num_heads, self.head_dim)
    k = k.reshape(b, t, self.num_kv_heads, self.head_dim)
    v = v.reshape(b, t, self.num_kv_heads, self.head_dim)
    if cos is not None:
      q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    if cache is not None:
      start = (0, cache_index, 0, 0)
      k = jax.lax.dynamic_update_slice(cache["k"], k.astype(cache["k"].dtype), start)
      v = jax.lax.dynamic_update_slice(cache["v"], v.astype(cache["v"].dtype), start)
    out, probs = attend(q, k, v, bias, p.precision, p.attention)
    y = Dense(d, self.out_bias, p, name="o")(out)
    return y, {"k": k, "v": v, "probs": probs, "q": q}
