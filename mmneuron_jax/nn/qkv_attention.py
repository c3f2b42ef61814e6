"""Bidirectional attention with one fused `qkv` projection and an output `proj`, as the EVA ViT
(InstructBLIP) and the Qwen2-VL vision tower use it."""
import flax.linen as nn
import jax.numpy as jnp

from mmneuron_jax.nn.attention import attend
from mmneuron_jax.nn.layers import Dense
from mmneuron_jax.nn.policy import Policy
from mmneuron_jax.nn.rope import apply_rope


class FusedQKVAttention(nn.Module):
  """x -> qkv [D, 3D] -> (rope) -> softmax attention (no causality) -> proj [D, D] (with bias)."""
  num_heads: int
  qkv_bias: bool = True
  policy: Policy = Policy()

  @nn.compact
  def __call__(self, x, bias=None, cos=None, sin=None):
    """x float[N, T, D]; bias float32[N, T, T] additive or None; cos/sin float32[N, T, hd] (rotary,
    applied to q and k in float32 and cast back, as HF does) or None -> float[N, T, D]."""
    n, t, d = x.shape
    p = self.policy
    qkv = Dense(features=3 * d, use_bias=self.qkv_bias, policy=p, name="qkv")(x)
    qkv = qkv.reshape(n, t, 3, self.num_heads, d // self.num_heads)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    if cos is not None:
      q = apply_rope(q.astype(jnp.float32), cos, sin).astype(v.dtype)
      k = apply_rope(k.astype(jnp.float32), cos, sin).astype(v.dtype)
    out, _ = attend(q, k, v, bias, p.precision, p.attention)
    return Dense(features=d, use_bias=True, policy=p, name="proj")(out)
