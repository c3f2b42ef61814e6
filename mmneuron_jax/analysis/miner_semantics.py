"""MINER Finding IV, "semantic probing" and "semantic telomeres", from the LLM's token representations.

The MINER paper (arXiv 2410.04819) names the two phenomena in its abstract and shows them in its
figures of token representations per layer (t-SNE); as its reviewers summarise them, in *semantic
probing* the audio tokens "reach out to" the text tokens, and in *semantic telomeres* the special
tokens "anchor themselves" to the text tokens. The paper gives no number for either and the
authors' code has none, so this module measures what those pictures show, in the full hidden space
(deterministic, no t-SNE): per layer, for the tokens of each modality, the share whose nearest
neighbour (cosine similarity, among the other tokens of the same sample) belongs to each modality,
next to the share a uniformly random neighbour would give (`chance_shares`). Probing = media
(image / video / audio) -> text share rising above chance; telomeres = special -> text share.
`pca2` gives the 2-D picture (PCA, not the paper's t-SNE).

Shapes: N tokens of one layer, D hidden size, A modalities (labels index `names`).
"""
from __future__ import annotations

import numpy as np


def _check(labels, sample_ids, n):
  labels, sample_ids = np.asarray(labels), np.asarray(sample_ids)
  if labels.shape != (n,) or sample_ids.shape != (n,):
    raise ValueError(f"labels and sample_ids must be int[N={n}]; got {labels.shape}, {sample_ids.shape}")
  return labels, sample_ids


def nearest_neighbour_shares(h, labels, sample_ids, n_labels: int) -> np.ndarray:
  """h float[N, D], labels int[N] in [0, A), sample_ids int[N] -> float64[A, A]: out[a, b] = share of
  the a-tokens whose nearest other token of the same sample (max cosine similarity; ties: lowest
  index) is a b-token; NaN rows for a modality with no token that has a neighbour."""
  h = np.asarray(h, np.float64)
  labels, sample_ids = _check(labels, sample_ids, h.shape[0])
  counts = np.zeros((n_labels, n_labels))
  unit = h / np.maximum(np.linalg.norm(h, axis=-1, keepdims=True), 1e-30)
  for s in np.unique(sample_ids):
    idx = np.flatnonzero(sample_ids == s)
    if len(idx) < 2:
      continue
    sim = unit[idx] @ unit[idx].T
    np.fill_diagonal(sim, -np.inf)
    nn = idx[np.argmax(sim, axis=1)]
    np.add.at(counts, (labels[idx], labels[nn]), 1.0)
  total = counts.sum(1, keepdims=True)
  return np.where(total > 0, counts / np.maximum(total, 1), np.nan)


def chance_shares(labels, sample_ids, n_labels: int) -> np.ndarray:
  """float64[A, A]: the expected `nearest_neighbour_shares` if each token's neighbour were a uniformly
  random other token of its sample (mean over the a-tokens of (#b - [a == b]) / (n_sample - 1))."""
  labels = np.asarray(labels)
  labels, sample_ids = _check(labels, sample_ids, labels.shape[0])
  sums, counts = np.zeros((n_labels, n_labels)), np.zeros(n_labels)
  for s in np.unique(sample_ids):
    lab = labels[sample_ids == s]
    if len(lab) < 2:
      continue
    per = np.bincount(lab, minlength=n_labels).astype(np.float64)
    for a in np.unique(lab):
      k = int((lab == a).sum())
      sums[a] += k * (per - np.eye(n_labels)[a]) / (len(lab) - 1)
      counts[a] += k
  return np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], np.nan)


def pca2(x) -> np.ndarray:
  """float[N, D] -> float64[N, 2]: projection on the two leading principal axes (centred; signs
  fixed so the largest |loading| of each axis is positive)."""
  x = np.asarray(x, np.float64)
  x = x - x.mean(0)
  _, _, vt = np.linalg.svd(x, full_matrices=False)
  vt = vt[:2]
  vt = vt * np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(1)])[:, None]
  out = x @ vt.T
  return out if out.shape[1] == 2 else np.pad(out, ((0, 0), (0, 2 - out.shape[1])))
