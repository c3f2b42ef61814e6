"""MINER Finding III: how much of the last token's attention goes to each modality's tokens, per
layer (head mean), with and without modality-specific neurons switched off.

`LastTokenAttention` is a decoder probe (a `nn.probes.QKProbe`, like `miner_probe.MinerScores`): inside
the layer scan it takes the layer's post-RoPE q float[B, T, H, hd] and k float[B, T, K, hd] and
forms only the last valid position's attention row

  row[b, s] = mean_h softmax_s(q[b, last_b, h] . k[b, s, h] / sqrt(hd))   over keys s <= last_b that are valid

(the model's own causal, padding-masked attention probabilities; GQA: key head j serves query
heads j*H/K ... ), float32[B, T] per layer: no [T, T] matrix is formed. `modality_mass` then sums the
row over each modality's token set: mass[l, b, m] = sum_{s in I_m} row[l, b, s].
"""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from mmneuron_jax.nn.probes import QKProbe

_HIGHEST = jax.lax.Precision.HIGHEST
_NEG = float(jnp.finfo(jnp.float32).min)


def last_positions(valid):
  """bool[B, T] -> int32[B]: the last valid position of each row (left or right padding)."""
  t = valid.shape[-1]
  return (t - 1 - jnp.argmax(valid[:, ::-1], axis=-1)).astype(jnp.int32)


def last_token_row(q, k, valid):
  """Post-RoPE q float[B, T, H, hd], k float[B, T, K, hd], valid bool[B, T] -> float32[B, T]: the
  head-mean causal attention probabilities of each row's last valid token (zero on masked keys)."""
  b, t, h, hd = q.shape
  kv = k.shape[2]
  if h % kv:
    raise ValueError(f"query heads {h} not a multiple of key heads {kv}")
  last = last_positions(valid)
  q_last = jnp.take_along_axis(q, last[:, None, None, None], axis=1)[:, 0]          # [B, H, hd]
  k = jnp.repeat(k, h // kv, axis=2)                                               # [B, T, H, hd]
  s = jnp.einsum("bhd,bthd->bht", q_last.astype(jnp.float32), k.astype(jnp.float32), precision=_HIGHEST)
  s = s * (hd ** -0.5)
  keys = valid & (jnp.arange(t)[None, :] <= last[:, None])                          # causal + padding
  s = jnp.where(keys[:, None, :], s, _NEG)
  p = jax.nn.softmax(s, axis=-1)
  return jnp.mean(jnp.where(keys[:, None, :], p, 0.0), axis=1)


@flax.struct.dataclass
class LastTokenAttention(QKProbe):
  """Decoder probe (`probe={'llm': LastTokenAttention(attention_mask)}`): per layer float32[B, T],
  the last valid token's head-mean attention row (see the module docstring); stacked [L, B, T]."""
  attention_mask: jax.Array

  def __call__(self, acts, q=None, k=None):
    if q is None or k is None:
      raise ValueError("LastTokenAttention needs the layer's post-RoPE q and k: use it as a decoder probe")
    b, t = acts.shape[:2]
    if self.attention_mask.shape != (b, t) or q.shape[:2] != (b, t) or k.shape[:2] != (b, t):
      raise ValueError(f"LastTokenAttention: attention_mask {self.attention_mask.shape}, q {q.shape}, k {k.shape} "
                       f"must all start with [B={b}, T={t}] (prefill, no cache)")
    return last_token_row(q, k, self.attention_mask != 0)


def modality_mass(rows, token_masks) -> np.ndarray:
  """rows float[L, B, T] (the probe's stacked output), token_masks bool[B, M, T] -> float64[L, B, M]."""
  rows = np.asarray(rows, np.float64)
  masks = np.asarray(token_masks, bool)
  if rows.ndim != 3 or masks.ndim != 3 or rows.shape[1] != masks.shape[0] or rows.shape[2] != masks.shape[2]:
    raise ValueError(f"modality_mass: rows must be [L, B, T] and token_masks [B, M, T]; got {rows.shape}, {masks.shape}")
  return np.einsum("lbt,bmt->lbm", rows, masks.astype(np.float64))
