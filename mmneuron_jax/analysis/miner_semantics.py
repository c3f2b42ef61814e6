"""MINER Finding IV, "semantic probing" and "semantic telomeres": OUR READING of two phenomena the
MINER paper names (arXiv 2410.04819, abstract: "two intriguing phenomena worth further
investigation, i.e., semantic probing and semantic telomeres"). The authors' released code has no
code for either, and the definitions below are readings, not a reproduction (docs/QUIRKS.md says
what is missing). Both use only what a run already has:

telomeres(selected, edge): "telomeres" are the ends of a chromosome; read as the modality-specific
  neurons gathering at the two ends of the layer stack. Per modality, the share of its set in the
  first and last `edge` layers, against the share a layer-uniform set would have there
  (2 * edge / L): ratio > 1 = the set concentrates at the ends.

probing(mass, modalities, conditions): "probing" read as the last token's attention seeking out a
  modality whose neurons are gone: per layer, how the attention mass on modality m's tokens moves
  when m's own selected neurons are off (Finding III data): delta[l] = mass(m | m off) - mass(m | none).
"""
from __future__ import annotations

import numpy as np


def edge_layers(layers: int, edge) -> int:
  """edge: a fraction of the layers (0 < edge < 0.5) or a whole count -> layers at each end (>= 1)."""
  e = float(edge)
  n = max(1, int(round(e * layers))) if 0 < e < 1 else int(e)
  if n < 1 or 2 * n > layers:
    raise ValueError(f"edge={edge!r}: gives {n} layers at each end of {layers}; need 1 <= n <= {layers // 2}")
  return n


def telomeres(selected, names, edge=0.1) -> dict:
  """bool[M, L, F] sets -> {modality: {'size', 'first', 'last', 'share', 'uniform_share', 'ratio'}}
  with first / last = neurons in the first / last n layers (n = `edge_layers(L, edge)`), share =
  (first + last) / size, uniform_share = 2n / L, ratio = share / uniform_share (None for an empty set)."""
  sel = np.asarray(selected, bool)
  if sel.ndim != 3 or sel.shape[0] != len(names):
    raise ValueError(f"selected must be bool[M={len(names)}, L, F]; got shape {sel.shape}")
  L = sel.shape[1]
  n = edge_layers(L, edge)
  per_layer = sel.sum(-1)                                                  # [M, L]
  out = {}
  for m, counts in zip(names, per_layer):
    size = int(counts.sum())
    first, last = int(counts[:n].sum()), int(counts[L - n:].sum())
    share = None if size == 0 else (first + last) / size
    out[m] = {"size": size, "edge_layers": n, "first": first, "last": last, "share": share,
              "uniform_share": 2 * n / L, "ratio": None if share is None else share / (2 * n / L)}
  return out


def probing(mass: dict, modalities, present=None) -> dict:
  """mass {condition: float[L, M] attention mass on each modality's tokens} (one dataset of the
  Finding III results) -> {modality m: float64[L] mass(m | m off) - mass(m | none)} for every m
  that has its own condition (and occurs: present[m] > 0 when `present` is given)."""
  if "none" not in mass:
    raise ValueError("probing needs the 'none' condition in the last-token results")
  base = np.asarray(mass["none"], np.float64)
  out = {}
  for k, m in enumerate(modalities):
    if m in mass and (present is None or present.get(m, 0) > 0):
      out[m] = np.asarray(mass[m], np.float64)[:, k] - base[:, k]
  return out
