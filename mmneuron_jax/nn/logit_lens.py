"""Logit lens readout: every layer's residual stream through the final norm and the unembedding.

The readout is reduced inside the layer scan to entropy, top-k and a target token's
log-prob, so `[L, B, P, V]` logits are never held. The last layer's readout equals the
model's own logits (the scan carries pre-norm residuals; the final norm is applied once).
"""
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from mmneuron_jax.nn.layers import rms_norm


@flax.struct.dataclass
class Lens:
  """positions int32[B, P]: token indices to read (-1 = padding, result is garbage there).
  targets int32[B, P] or None: token whose log-prob to report at each position.
  translator: None (logit lens) or tuned-lens maps {'weight': float32[L, D, D], 'bias': float32[L, D]}
    applied to h_l before the readout as h + h @ W_l + b_l (`translate`); zeros = the logit lens.
  hidden: also return the residual h_l at the positions as 'hidden' float[B, P, D] (untranslated).
  """
  positions: jax.Array
  targets: jax.Array | None = None
  top_k: int = flax.struct.field(pytree_node=False, default=10)
  translator: Any = None
  hidden: bool = flax.struct.field(pytree_node=False, default=False)


def readout_logits(h, norm_scale, norm_eps, unembed, precision=jax.lax.Precision.HIGHEST):
  """h float[B, P, D] residual -> float32[B, P, V] logits = unembed(final_norm(h))."""
  x = rms_norm(h, norm_scale, norm_eps)
  return jnp.einsum("bpd,dv->bpv", x, unembed.astype(x.dtype), precision=precision).astype(jnp.float32)


def reduce_logits(logits, lens: Lens):
  """float32[B, P, V] -> {'entropy': [B, P], 'top_ids': int32[B, P, k], 'top_probs': [B, P, k],
  'target_logprob': [B, P] (if targets)} with entropy in nats."""
  logp = jax.nn.log_softmax(logits, axis=-1)
  probs = jnp.exp(logp)
  out = {"entropy": -jnp.sum(probs * logp, axis=-1)}
  top_logp, top_ids = jax.lax.top_k(logp, lens.top_k)
  out["top_ids"] = top_ids.astype(jnp.int32)
  out["top_probs"] = jnp.exp(top_logp)
  if lens.targets is not None:
    out["target_logprob"] = jnp.take_along_axis(logp, lens.targets[..., None].astype(jnp.int32), -1)[..., 0]
  return out


def translate(h, translator, precision=jax.lax.Precision.HIGHEST):
  """Tuned-lens affine map of one layer, residual form: h float[..., D] -> h + h @ W + b, with
  translator {'weight': float[D, D], 'bias': float[D]}; W = 0, b = 0 returns h unchanged."""
  delta = jnp.einsum("...d,de->...e", h, translator["weight"].astype(h.dtype), precision=precision)
  return h + delta.astype(h.dtype) + translator["bias"].astype(h.dtype)


def lens_readout(h, lens: Lens, norm_scale, norm_eps, unembed, precision=jax.lax.Precision.HIGHEST,
                 translator=None):
  """One layer: h float[B, T, D] -> reduced readout at `lens.positions`; `translator` is this
  layer's slice of `lens.translator` (the decoder scans it), None for the plain logit lens."""
  idx = jnp.clip(lens.positions, 0, h.shape[1] - 1).astype(jnp.int32)
  sel = jnp.take_along_axis(h, idx[..., None], axis=1)
  out = {"hidden": sel} if lens.hidden else {}
  if translator is not None:
    sel = translate(sel, translator, precision)
  out.update(reduce_logits(readout_logits(sel, norm_scale, norm_eps, unembed, precision), lens))
  return out
