"""Logit lens on the host: which positions to read, and per-layer means of the readouts.

The readout itself (`Lens`, reduced inside the layer scan) is `mmneuron_jax.nn.logit_lens`;
`Lens` is re-exported here so `from mmneuron_jax.analysis.logit_lens import Lens,
positions_where` keeps working.
"""
import numpy as np

from mmneuron_jax.nn.logit_lens import Lens

__all__ = ["Lens", "layer_means", "positions_where"]


def positions_where(mask, pad_to=None):
  """bool[B, T] -> int32[B, P] indices of True entries per row, padded with -1 (host side)."""
  mask = np.asarray(mask, bool)
  rows = [np.nonzero(m)[0] for m in mask]
  p = max([len(r) for r in rows] + [1]) if pad_to is None else pad_to
  out = np.full((mask.shape[0], p), -1, np.int32)
  for i, r in enumerate(rows):
    out[i, :len(r)] = r[:p]
  return out


def layer_means(values, positions):
  """values float[L, B, P], positions int32[B, P] -> float64[L] mean over valid positions."""
  valid = np.asarray(positions) >= 0
  v = np.asarray(values, np.float64)
  return (v * valid[None]).sum(axis=(1, 2)) / max(valid.sum(), 1)
