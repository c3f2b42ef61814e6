"""Layer probes: the optax logistic regression reaches the numpy optimum of the same convex
objective; splits, control labels and PCA against numpy; on the planted model, a probe on vision
neurons finds the hue at the planted layer (held-out accuracy >= 0.95) and a label-permuted
control stays at chance."""
import numpy as np
import pytest

import mmneuron_jax
from mmneuron_jax.analysis import layer_probes as lp
from mmneuron_jax.data.inputs import prompts
from mmneuron_jax.data.inputs.llava_next import LlavaNextInputs
from mmneuron_jax.data.sources.records import load_image
from mmneuron_jax.data.synthetic import planted_llm
from mmneuron_jax.tasks.readouts.data import prompt_batches
from mmneuron_jax.tasks.readouts.probes import parse_probe_spec, probe_dataset

HUES = ["red", "yellow", "green", "cyan", "blue"]


def numpy_logreg(x, y, c, l2, steps=4000, lr=0.5):
  """Plain gradient descent on mean cross-entropy + l2 * |W|^2 (standardised x) -> (W, b)."""
  n, f = x.shape
  w, b = np.zeros((f, c)), np.zeros(c)
  onehot = np.eye(c)[y]
  for _ in range(steps):
    z = x @ w + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    g = (p - onehot) / n
    w -= lr * (x.T @ g + 2 * l2 * w)
    b -= lr * g.sum(0)
  return w, b


def test_probe_reaches_numpy_optimum():
  rng = np.random.default_rng(0)
  layers, n, f, c = 2, 90, 5, 3
  y = rng.integers(0, c, n)
  centres = rng.standard_normal((layers, c, f))
  x = (centres[:, y] + 1.5 * rng.standard_normal((layers, n, f))).astype(np.float32)
  train = np.arange(n) % 4 != 0
  probes = lp.train_probes(x, y, train, c, steps=1500, lr=0.05, l2=1e-2)
  for layer in range(layers):
    xt = x[layer][train].astype(np.float64)
    mu, sd = xt.mean(0), xt.std(0)
    w, b = numpy_logreg((xt - mu) / sd, y[train], c, 1e-2)
    np.testing.assert_allclose(np.asarray(probes["mu"][layer]), mu, atol=1e-5)
    np.testing.assert_allclose(np.asarray(probes["sd"][layer]), sd, atol=1e-5)
    np.testing.assert_allclose(np.asarray(probes["w"][layer]), w, atol=2e-3)
    # softmax is shift-invariant in b: compare centred biases
    bb = np.asarray(probes["b"][layer])
    np.testing.assert_allclose(bb - bb.mean(), b - b.mean(), atol=2e-3)
    pred = (((x[layer] - mu) / sd) @ w + b).argmax(1)
    acc = lp.accuracy(probes, x, y, ~train)[layer]
    assert abs(acc - (pred[~train] == y[~train]).mean()) <= 1.0 / (~train).sum() + 1e-9


def test_split_control_and_pca():
  labels = np.repeat(np.arange(4), 5)
  held = lp.heldout_samples(labels, frac=0.4, seed=3)
  np.testing.assert_array_equal(held, lp.heldout_samples(labels, frac=0.4, seed=3))
  assert all(held[labels == c].sum() == 2 for c in range(4))
  samples = np.repeat(np.arange(20), 3)
  permuted = lp.permuted_labels(labels[samples], samples, seed=1)
  assert all(len(set(permuted[samples == s])) == 1 for s in range(20))  # one label per sample
  np.testing.assert_array_equal(np.sort(permuted), np.sort(labels[samples]))
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 50, 6)) * np.array([5, 3, 1, 1, 1, 1])
  proj, ratio = lp.pca_2d(x)
  for layer in range(2):
    xc = x[layer] - x[layer].mean(0)
    vals, vecs = np.linalg.eigh(np.cov(xc.T))
    ref = xc @ vecs[:, ::-1][:, :2]
    np.testing.assert_allclose(np.abs(proj[layer]), np.abs(ref), atol=1e-4)
    np.testing.assert_allclose(ratio[layer], vals[::-1][:2] / vals.sum(), atol=1e-6)


def test_bad_spec_names_the_field():
  with pytest.raises(ValueError, match="config.probes.specs"):
    parse_probe_spec("vision:mean", {"vision": (3, 8)})
  with pytest.raises(ValueError, match="modality"):
    parse_probe_spec("vision:token:modality", {"vision": (3, 8)})


def test_planted_layer_is_found_and_control_is_chance(tmp_path):
  path = planted_llm.build(str(tmp_path / "planted"), HUES)
  model = mmneuron_jax.load_hf(path)
  inputs = LlavaNextInputs.from_pretrained(path)
  records = planted_llm.hue_records(HUES, 6)
  batches = prompt_batches(inputs, records, prompts.stats_prompt, load_image, 10)
  data = probe_dataset(model, model.params, batches, HUES, "vision:mean:domain", 16)
  assert data["x"].shape == (3, 30, 80) and data["classes"] == HUES
  r = lp.run_probe(data["x"], data["y"], data["sample"], len(HUES), frac=0.34, control_repeats=5)
  planted_layer = 1
  assert r["n_heldout"] == 15  # 3 of 6 samples per hue
  assert r["heldout_acc"][planted_layer] >= 0.95, r["heldout_acc"]
  assert abs(r["control_acc"][planted_layer] - 1 / len(HUES)) <= 0.15, r["control_acc"]
  assert r["heldout_acc"][planted_layer] == r["heldout_acc"].max()
