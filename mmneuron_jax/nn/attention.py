"""Multi-head / grouped-query attention with an optional KV cache."""
import flax.linen as nn
import flax.struct
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


@flax.struct.dataclass
class CausalMask:
  """A prefill mask (causal by index + key padding) in the two forms the kernels take.

  bias float32[B, T, T]: the additive bias, right for any padding (the materialised path);
  kv_len int32[B]: valid keys per row (at least 1), right when `right_padded`;
  right_padded bool[]: every row's padding is at its end, so `is_causal` + `kv_len` equal the bias
  (fused kernels then skip the masked blocks and never read a [B, T, T] bias).
  """
  bias: jax.Array
  kv_len: jax.Array
  right_padded: jax.Array
  sliding_window: int | None = flax.struct.field(pytree_node=False, default=None)


def causal_mask(attention_mask, sliding_window=None) -> CausalMask:
  """int[B, T] (1 = real token) -> the prefill `CausalMask`."""
  valid = attention_mask.astype(bool)
  t = valid.shape[1]
  kv_len = valid.sum(axis=1).astype(jnp.int32)
  right_padded = jnp.all(valid == (jnp.arange(t)[None, :] < kv_len[:, None]))
  bias = mask_to_bias(causal_allowed(valid, jnp.arange(t), sliding_window))
  return CausalMask(bias, jnp.maximum(kv_len, 1), right_padded, sliding_window)


def _bias_of(mask):
  return mask.bias if isinstance(mask, CausalMask) else mask


def attend(q, k, v, mask, precision, impl: str = "xla"):
  """q float[B, T, H, hd], k/v float[B, S, K, hd]; mask: a `CausalMask`, an additive bias
  float32[B or 1, T or 1, S] or None.

  Returns (out float[B, T, H*hd], probs float32[B, H, T, S]). impl 'xla' materialises the
  probabilities; 'cudnn' / 'fused' run `jax.nn.dot_product_attention` (cuDNN flash attention /
  XLA's choice) and return probs=None (nothing downstream may need them).
  """
  b, t, h, hd = q.shape
  if impl != "xla" and (impl == "fused" or fused_supported(q)):
    out = fused_attend(q, k, v, mask, "cudnn" if impl == "cudnn" else None)
    return out.reshape(b, t, h * hd), None
  kv_heads = k.shape[2]
  qg = q.reshape(b, t, kv_heads, h // kv_heads, hd)
  scores = jnp.einsum("btkgd,bskd->bkgts", qg, k, precision=precision) * (hd ** -0.5)
  scores = scores.astype(jnp.float32)
  bias = _bias_of(mask)
  if bias is not None:
    scores = scores + bias[:, None, None]
  probs = jax.nn.softmax(scores, axis=-1)
  out = jnp.einsum("bkgts,bskd->btkgd", probs.astype(v.dtype), v, precision=precision)
  return out.reshape(b, t, h * hd), probs.reshape(b, h, t, -1)


def fused_supported(q) -> bool:
  """Whether cuDNN flash attention takes these queries (bf16/fp16, head dim <= 256 and a multiple
  of 8, as JAX checks on Hopper); callers fall back to the materialised path otherwise."""
  hd = q.shape[-1]
  return q.dtype in (jnp.bfloat16, jnp.float16) and hd <= 256 and hd % 8 == 0


def fused_attend(q, k, v, mask, implementation):
  """`jax.nn.dot_product_attention` under `mask` -> float[B, T, H, hd].

  A `CausalMask` without a sliding window runs `is_causal` + key lengths when its rows are right
  padded (a `lax.cond` on device, so one jit serves left and right padding) and the bias
  otherwise; float32 runs at precision highest.
  """
  b, t, _, hd = q.shape
  s = k.shape[1]
  kwargs = {"scale": hd ** -0.5, "implementation": implementation}

  def with_bias(bias):
    bias4 = None if bias is None else jnp.broadcast_to(bias, (b, t, s))[:, None].astype(q.dtype)
    return jax.nn.dot_product_attention(q, k, v, bias=bias4, **kwargs)

  def run():
    if isinstance(mask, CausalMask) and mask.sliding_window is None and t == s:
      causal = lambda: jax.nn.dot_product_attention(q, k, v, is_causal=True, key_value_seq_lengths=mask.kv_len,
                                                    **kwargs)
      return jax.lax.cond(mask.right_padded, causal, lambda: with_bias(mask.bias))
    return with_bias(_bias_of(mask))

  if q.dtype == jnp.float32:
    with jax.default_matmul_precision("highest"):
      return run()
  return run()


class SelfAttention(nn.Module):
  """q/k/v/o projections; RoPE when cos/sin are given; GQA when num_kv_heads < num_heads."""
  num_heads: int
  num_kv_heads: int
  head_dim: int
  qkv_bias: bool = False
  out_bias: bool = False
  policy: Policy = Policy()

  @nn.compact
  def __call__(self, x, mask, cos=None, sin=None, cache=None, cache_index=None):
    """x float[B, T, D]; mask: a `CausalMask` or an additive bias float32[B, T, S] (see `attend`); cache
    {'k','v': float[B, S, K, hd]} written at `cache_index`.

    Returns (y float[B, T, D], aux) with aux['k'], aux['v'] the (updated) keys/values,
    aux['q'] float[B, T, H, hd] the post-RoPE queries and aux['probs'] the (masked) probabilities.
    """
    b, t, d = x.shape
    p = self.policy
    q = Dense(features=self.num_heads * self.head_dim, use_bias=self.qkv_bias, policy=p, name="q")(x)
    k = Dense(features=self.num_kv_heads * self.head_dim, use_bias=self.qkv_bias, policy=p, name="k")(x)
    v = Dense(features=self.num_kv_heads * self.head_dim, use_bias=self.qkv_bias, policy=p, name="v")(x)
    q = q.reshape(b, t, self.num_heads, self.head_dim)
    k = k.reshape(b, t, self.num_kv_heads, self.head_dim)
    v = v.reshape(b, t, self.num_kv_heads, self.head_dim)
    if cos is not None:
      q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    if cache is not None:
      start = (0, cache_index, 0, 0)
      k = jax.lax.dynamic_update_slice(cache["k"], k.astype(cache["k"].dtype), start)
      v = jax.lax.dynamic_update_slice(cache["v"], v.astype(cache["v"].dtype), start)
    out, probs = attend(q, k, v, mask, p.precision, p.attention)
    y = Dense(features=d, use_bias=self.out_bias, policy=p, name="o")(out)
    return y, {"k": k, "v": v, "probs": probs, "q": q}
