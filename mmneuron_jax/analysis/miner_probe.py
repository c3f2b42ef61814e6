"""MINER stage 2 inside the decoder's layer scan: the five importance scores of every sample,
per layer, without ever holding `[L, B, T, F]` activations or `[L, B, H, T, T]` attention.

`MinerScores` is a probe (see `nn/probes.py`) for the `llm` module of a decoder. It is a
`nn.probes.QKProbe`, so `DecoderLayer` calls it as `probe(neurons, q=..., k=...)` with the layer's
post-RoPE queries float[B, T, H, hd] and keys float[B, T, K, hd]. Per layer and sample it forms

  A = mean_h softmax_keys(Q_h K_h^T / sqrt(hd))      (GQA: each key head serves H/K query heads)

with NO causal mask (REFERENCE.md, MINER stage 2), and then applies exactly the per-layer math
of `miner.importance` (same code, vmapped over the batch): prob, mean, max, attn_k, attn_q over
each modality's token set I, min-max normalised over the F neurons; absent modality -> zeros.

Padding. The authors run one sample at a time, so their unmasked softmax never sees a padding
key. In a padded batch we reproduce that: keys with attention_mask == 0 are left out of the
first softmax (the only mask applied: no causal mask), padded positions belong to no modality
(`miner.token_modality_masks` drops them), and everything after the first softmax (the second
softmax E = exp(A[I, I]), the weights w, every sum / max) is restricted to I. Hence the scores
of a padded batch row equal the scores of that sample run alone (batch 1, no padding) up to
float32 noise; tests/test_miner_probe.py checks this (right padding; with left padding the
RoPE positions shift, which changes nothing mathematically but adds rounding).

Example (Qwen2-VL, a HF-named batch):

  from mmneuron_jax.analysis import miner, miner_probe
  from mmneuron_jax.models.mllm import qwen2_vl
  probe = miner_probe.MinerScores.from_batch(batch, qwen2_vl.TOKEN_IDS)
  out = model.apply(model.params, batch, probe={"llm": probe})
  scores = miner_probe.scores_from_output(out)        # float32[B, 5, M=7, L, F]
  per_dataset = miner.dataset_mean(scores)             # float32[5, M, L, F], then aggregate/combine/select

Prefill only: with a KV cache the keys would be the whole cache; the probe is meant for the
plain forward of `model.apply`. Statistics are float32 whatever the compute dtype.
"""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from mmneuron_jax.analysis import miner
from mmneuron_jax.nn.probes import QKProbe

_HIGHEST = jax.lax.Precision.HIGHEST
_NEG = float(jnp.finfo(jnp.float32).min)


def head_mean_attention(q, k, key_valid=None):
  """Post-RoPE q float[B, T, H, hd], k float[B, S, K, hd] (K divides H), key_valid bool[B, S]
  or None -> float32[B, T, S]: mean over heads of softmax(q k^T / sqrt(hd)) over the keys.

  No causal mask; keys with key_valid False (padding) are left out of the softmax. Key head
  j serves query heads j*H/K ... (j+1)*H/K - 1 (HF `repeat_kv`)."""
  b, t, h, hd = q.shape
  kv = k.shape[2]
  if h % kv:
    raise ValueError(f"query heads {h} not a multiple of key heads {kv}")
  k = jnp.repeat(k, h // kv, axis=2)
  s = jnp.einsum("bthd,bshd->bhts", q.astype(jnp.float32), k.astype(jnp.float32), precision=_HIGHEST)
  s = s * (hd ** -0.5)
  if key_valid is not None:
    s = jnp.where(key_valid[:, None, None, :], s, _NEG)
  return jnp.mean(jax.nn.softmax(s, axis=-1), axis=1)


@flax.struct.dataclass
class MinerScores(QKProbe):
  """In-scan MINER stage 2 probe for a decoder (`probe={'llm': MinerScores(...)}`).

  token_masks: bool[B, M, T] modality token sets per sample (e.g. `MODALITIES` order from
    `miner.token_modality_masks`, moved to [B, M, T]); padding must be in no set.
  attention_mask: bool[B, T]; keys with 0 (padding) are left out of the first softmax, so a
    padded row scores like the sample alone. Pass all ones for the literal unmasked formula.
  flat_rtol: static; see `miner.importance`.
  Call: acts float[B, T, F], q float[B, T, H, hd], k float[B, T, K, hd] -> float32[B, 5, M, F]
  (METRICS order); the scan stacks it to [L, B, 5, M, F] (`scores_from_output`).
  """
  token_masks: jax.Array
  attention_mask: jax.Array
  flat_rtol: float = flax.struct.field(pytree_node=False, default=miner.FLAT_RTOL)

  @classmethod
  def from_batch(cls, batch, token_ids=None, flat_rtol: float = miner.FLAT_RTOL,
                 **id_overrides) -> "MinerScores":
    """HF-named batch ({'input_ids' int[B, T], optional 'attention_mask'}) -> probe over the 7
    `miner.MODALITIES`. token_ids (a family module's `TOKEN_IDS`) / id_overrides (special_ids=,
    image_ids=, video_ids=, audio_ids=) as `miner.token_modality_masks`."""
    ids = jnp.asarray(batch["input_ids"])
    if ids.ndim != 2:
      raise ValueError(f"input_ids must be int[B, T]; got shape {ids.shape}")
    am = batch.get("attention_mask")
    am = jnp.ones(ids.shape, bool) if am is None else jnp.asarray(am) != 0
    masks = miner.token_modality_masks(ids, token_ids, am, **id_overrides)   # [M, B, T]
    return cls(token_masks=jnp.swapaxes(masks, 0, 1), attention_mask=am, flat_rtol=float(flat_rtol))

  def __call__(self, acts, q=None, k=None):
    if q is None or k is None:
      raise ValueError("MinerScores needs the layer's post-RoPE q and k: use it as a decoder probe "
                       "(probe={'llm': ...}), not for a vision/audio tower")
    b, t, _ = acts.shape
    if self.token_masks.ndim != 3 or self.token_masks.shape[0] != b or self.token_masks.shape[2] != t:
      raise ValueError(f"MinerScores.token_masks must be bool[B={b}, M, T={t}]; got {self.token_masks.shape}")
    if self.attention_mask.shape != (b, t):
      raise ValueError(f"MinerScores.attention_mask must be [B={b}, T={t}]; got {self.attention_mask.shape}")
    if q.shape[:2] != (b, t) or k.shape[:2] != (b, t):
      raise ValueError(f"MinerScores: q {q.shape} / k {k.shape} must be [B={b}, T={t}, heads, hd] (prefill, no cache)")
    attn = head_mean_attention(q, k, self.attention_mask != 0)           # [B, T, T]
    masks = self.token_masks != 0

    def one(a, s, m):  # [T, F], [T, T], [M, T] -> [5, M, F]: miner's per-layer math with L = 1
      return miner.importance_scores(a[None].astype(jnp.float32), s[None], m, self.flat_rtol)[:, :, 0]

    return jax.vmap(one)(acts, attn, masks)


def scores_from_output(out, module: str = "llm"):
  """`Output` of `model.apply(..., probe={module: MinerScores})` (or its stacked probe result
  float[L, B, 5, M, F]) -> float32[B, 5, M, L, F], i.e. `miner.importance` per sample."""
  x = out.probe[module] if hasattr(out, "probe") else out
  x = jnp.asarray(x, jnp.float32)
  if x.ndim != 5 or x.shape[2] != len(miner.METRICS):
    raise ValueError(f"expected MinerScores results float[L, B, 5, M, F]; got shape {x.shape}")
  return jnp.transpose(x, (1, 2, 3, 0, 4))
