"""Rotary position embeddings in HF's rotate-half convention."""
import jax.numpy as jnp
import numpy as np


def inv_frequencies(head_dim: int, theta: float, linear_factor: float = 1.0):
  """float32[head_dim // 2]; linear scaling divides the frequencies (HF 'linear' rope)."""
  inv = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
  return jnp.asarray(inv / linear_factor, jnp.float32)


def rope_cos_sin(positions, inv_freq, mrope_section=None):
  """positions int[B, T] (or int[3, B, T] with `mrope_section`) -> (cos, sin) float32[B, T, head_dim].

  M-RoPE (Qwen2-VL): frequency k reads the temporal / height / width position stream that its
  section of `mrope_section` (sizes summing to head_dim / 2) assigns it.
  """
  if mrope_section is not None:
    if sum(mrope_section) != inv_freq.shape[0]:
      raise ValueError(f"mrope_section {tuple(mrope_section)} must sum to head_dim/2 = {inv_freq.shape[0]}")
    stream = np.repeat(np.arange(len(mrope_section)), mrope_section)
    pos = positions.astype(jnp.float32)[stream]  # [hd/2, B, T]
    freqs = jnp.moveaxis(pos, 0, -1) * inv_freq
  else:
    freqs = positions.astype(jnp.float32)[..., None] * inv_freq
  emb = jnp.concatenate([freqs, freqs], axis=-1)
  return jnp.cos(emb), jnp.sin(emb)


def rotate_half(x):
  half = x.shape[-1] // 2
  return jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def apply_rope(x, cos, sin):
  """x float[B, T, H, hd], cos/sin float32[B, T, hd] -> rotated x (in x's dtype)."""
  cos = cos[:, :, None, :].astype(x.dtype)
  sin = sin[:, :, None, :].astype(x.dtype)
  return x * cos + rotate_half(x) * sin
