"""Layer probes (beyond the papers): one multinomial logistic regression per layer that predicts a
label (domain for MMNeuron, modality for MINER) from features of that layer, trained with optax
(full batch, Adam, L2), with a deterministic held-out split by sample. Held-out accuracy per layer
turns "modalities converge in the lower layers" into a number; a label-permuted control shows what
a probe gets from nothing (chance); `pca_2d` gives the familiar 2-D picture per layer.

Features are float[L, N, F] (N data points: tokens, or samples after mean pooling), standardised
per layer with the training points' mean and std.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax


def heldout_samples(sample_labels, frac: float = 0.25, seed: int = 0) -> np.ndarray:
  """bool[S]: the held-out samples, ceil(frac * n_c) of each label c (at least 1 when a class
  has 2+ samples), chosen by a seeded permutation: deterministic, stratified."""
  labels = np.asarray(sample_labels)
  held = np.zeros(len(labels), bool)
  rng = np.random.default_rng(seed)
  for c in np.unique(labels):
    idx = np.flatnonzero(labels == c)
    k = int(np.ceil(frac * len(idx))) if len(idx) > 1 else 0
    held[rng.permutation(idx)[:k]] = True
  return held


def permuted_labels(labels, sample_ids, seed: int = 0) -> np.ndarray:
  """The control task: labels shuffled across samples (a sample's points keep one shared label
  when the label is per sample; token labels are shuffled across all points)."""
  labels, sample_ids = np.asarray(labels), np.asarray(sample_ids)
  rng = np.random.default_rng(seed + 7)
  per_sample = all(len(np.unique(labels[sample_ids == s])) == 1 for s in np.unique(sample_ids))
  if not per_sample:
    return rng.permutation(labels)
  uniq = np.unique(sample_ids)
  first = np.array([labels[np.flatnonzero(sample_ids == s)[0]] for s in uniq])
  mapping = dict(zip(uniq.tolist(), rng.permutation(first).tolist()))
  return np.array([mapping[s] for s in sample_ids.tolist()], labels.dtype)


def _standardise(x, train):
  w = train.astype(x.dtype)[None, :, None]
  n = jnp.maximum(w.sum(axis=1, keepdims=True), 1.0)
  mu = jnp.sum(x * w, axis=1, keepdims=True) / n
  sd = jnp.sqrt(jnp.sum(((x - mu) * w) ** 2, axis=1, keepdims=True) / n)
  return (x - mu) / jnp.maximum(sd, 1e-6), mu, sd


def _loss(probe, x, onehot, weights, l2):
  logits = x @ probe["w"] + probe["b"]
  ce = -jnp.sum(onehot * jax.nn.log_softmax(logits, axis=-1), axis=-1)
  return jnp.sum(ce * weights) / jnp.maximum(weights.sum(), 1.0) + l2 * jnp.sum(probe["w"] ** 2)


@functools.partial(jax.jit, static_argnames=("num_classes", "steps", "lr", "l2"))
def _train(x, y, train, num_classes, steps, lr, l2):
  xs, mu, sd = _standardise(x, train)
  onehot = jax.nn.one_hot(y, num_classes)
  weights = train.astype(jnp.float32)
  optimizer = optax.adam(lr)

  def one_layer(xl):
    probe = {"w": jnp.zeros((xl.shape[-1], num_classes), jnp.float32), "b": jnp.zeros((num_classes,), jnp.float32)}

    def body(carry, _):
      p, s = carry
      grads = jax.grad(_loss)(p, xl, onehot, weights, l2)
      updates, s = optimizer.update(grads, s, p)
      return (optax.apply_updates(p, updates), s), None

    (probe, _), _ = jax.lax.scan(body, (probe, optimizer.init(probe)), None, length=steps)
    return probe

  probes = jax.vmap(one_layer)(xs)
  return dict(probes, mu=mu[:, 0], sd=sd[:, 0])


def train_probes(x, y, train, num_classes: int, steps: int = 300, lr: float = 0.05, l2: float = 1e-3) -> dict:
  """x float[L, N, F] features, y int[N] labels, train bool[N] -> probes {'w': [L, F, C],
  'b': [L, C], 'mu': [L, F], 'sd': [L, F]} (one per layer, trained on the `train` points)."""
  x = jnp.asarray(x, jnp.float32)
  if x.ndim != 3 or x.shape[1] != len(y) or len(train) != len(y):
    raise ValueError(f"train_probes: x {x.shape}, y {np.shape(y)}, train {np.shape(train)} do not fit [L, N, F], [N], [N]")
  return _train(x, jnp.asarray(y, jnp.int32), jnp.asarray(train, bool), int(num_classes), int(steps), float(lr),
                float(l2))


def predict(probes, x) -> np.ndarray:
  """float[L, N, F] -> int[L, N] predicted classes."""
  x = (jnp.asarray(x, jnp.float32) - probes["mu"][:, None]) / jnp.maximum(probes["sd"][:, None], 1e-6)
  return np.asarray(jnp.argmax(jnp.einsum("lnf,lfc->lnc", x, probes["w"]) + probes["b"][:, None], axis=-1))


def accuracy(probes, x, y, mask) -> np.ndarray:
  """float[L]: accuracy per layer over the points where mask (bool[N]) is set."""
  mask = np.asarray(mask, bool)
  hits = predict(probes, x) == np.asarray(y)[None]
  return hits[:, mask].mean(axis=1) if mask.any() else np.full(hits.shape[0], np.nan)


def majority_rate(y, train, heldout) -> float:
  """Held-out accuracy of always predicting the training set's most frequent label."""
  y = np.asarray(y)
  top = np.bincount(y[np.asarray(train, bool)]).argmax()
  return float((y[np.asarray(heldout, bool)] == top).mean())


def pca_2d(x) -> tuple[np.ndarray, np.ndarray]:
  """float[L, N, F] -> (float32[L, N, 2] projections on the top two principal axes of each
  layer (centred, numpy SVD), float[L, 2] explained variance ratios)."""
  x = np.asarray(x, np.float64)
  out, ratio = np.zeros(x.shape[:2] + (2,), np.float32), np.zeros((x.shape[0], 2))
  for l, xl in enumerate(x):
    xc = xl - xl.mean(axis=0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    k = min(2, vt.shape[0])
    out[l, :, :k] = xc @ vt[:k].T
    total = (s ** 2).sum()
    ratio[l, :k] = (s[:k] ** 2) / total if total > 0 else 0.0
  return out, ratio


def run_probe(x, y, sample_ids, num_classes: int, frac: float = 0.25, seed: int = 0, control_repeats: int = 3,
              **train_kwargs) -> dict:
  """Split by sample, train on the rest, report per layer: {'heldout_acc': float[L], 'train_acc',
  'control_acc' (mean over `control_repeats` label permutations across samples: chance),
  'majority' (always the most frequent training label), 'n_train', 'n_heldout', 'heldout' bool[N]}."""
  y, sample_ids = np.asarray(y), np.asarray(sample_ids)
  uniq = np.unique(sample_ids)
  sample_label = np.array([np.bincount(y[sample_ids == s]).argmax() for s in uniq])
  held_samples = uniq[heldout_samples(sample_label, frac, seed)]
  heldout = np.isin(sample_ids, held_samples)
  train = ~heldout
  if not heldout.any() or not train.any():
    raise ValueError(f"run_probe: {len(uniq)} samples give an empty train or held-out split (frac={frac})")
  probes = train_probes(x, y, train, num_classes, **train_kwargs)
  control = []
  for r in range(control_repeats):
    y_control = permuted_labels(y, sample_ids, seed + r)
    control.append(accuracy(train_probes(x, y_control, train, num_classes, **train_kwargs), x, y_control, heldout))
  return {"heldout_acc": accuracy(probes, x, y, heldout), "train_acc": accuracy(probes, x, y, train),
          "control_acc": np.mean(control, axis=0) if control else np.full(x.shape[0], np.nan),
          "majority": majority_rate(y, train, heldout), "n_train": int(train.sum()),
          "n_heldout": int(heldout.sum()), "heldout": heldout}
