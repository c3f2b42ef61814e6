"""Learned masks: hard-concrete gates and the answer losses against plain numpy; on the planted
model (hue -> answer circuit in the LLM), the learned removal sets recover the planted neurons
(precision and recall >= 0.9) and removing them takes each hue's answer away, and only its own."""
import jax
import numpy as np

import mmneuron_jax
from mmneuron_jax.analysis import learned_masks as lm
from mmneuron_jax.data.inputs import prompts
from mmneuron_jax.data.inputs.llava_next import LlavaNextInputs
from mmneuron_jax.data.sources.records import load_image
from mmneuron_jax.data.synthetic import planted_llm
from mmneuron_jax.tasks.readouts.data import teacher_forced

HUES = ["red", "yellow", "green", "cyan", "blue"]


def test_hard_concrete_matches_numpy():
  beta, gamma, zeta = 2 / 3, -0.1, 1.1
  log_alpha = np.linspace(-6, 6, 40).reshape(4, 10).astype(np.float32)
  key = jax.random.PRNGKey(3)
  u = np.asarray(jax.random.uniform(key, log_alpha.shape, minval=1e-6, maxval=1 - 1e-6), np.float64)
  s = 1 / (1 + np.exp(-(np.log(u) - np.log(1 - u) + log_alpha) / beta))
  ref = np.clip(s * (zeta - gamma) + gamma, 0, 1)
  np.testing.assert_allclose(np.asarray(lm.sample_gates(log_alpha, key)), ref, atol=1e-5)
  det = np.clip(1 / (1 + np.exp(-log_alpha)) * (zeta - gamma) + gamma, 0, 1)
  np.testing.assert_allclose(np.asarray(lm.deterministic_gates(log_alpha)), det, atol=1e-6)
  p_nonzero = 1 / (1 + np.exp(-(log_alpha - beta * np.log(-gamma / zeta))))
  np.testing.assert_allclose(np.asarray(lm.l0_probability(log_alpha)), p_nonzero, atol=1e-6)
  np.testing.assert_array_equal(lm.removed(log_alpha), det > 0.5)


def test_answer_losses_match_numpy():
  rng = np.random.default_rng(0)
  b, t, v = 3, 6, 11
  logits = (4 * rng.standard_normal((b, t, v))).astype(np.float32)
  logits[0, 2, 5] = 40.0  # p ~ 1: the unlikelihood must stay finite and exact
  ids = rng.integers(0, v, (b, t))
  ids[0, 3] = 5
  mask = np.zeros((b, t), bool)
  mask[0, 3:5] = mask[1, 1] = mask[2, 4:6] = True
  ul, nll = lm.group_losses(logits, ids, mask)
  for i in range(b):
    ref_ul, ref_nll = [], []
    for j in np.flatnonzero(mask[i]):
      z = logits[i, j - 1].astype(np.float64)
      logp = z - z.max() - np.log(np.exp(z - z.max()).sum())
      others = np.delete(z, ids[i, j])
      log_rest = others.max() + np.log(np.exp(others - others.max()).sum()) - (z.max() + np.log(np.exp(z - z.max()).sum()))
      ref_ul.append(-log_rest)
      ref_nll.append(-logp[ids[i, j]])
    np.testing.assert_allclose(float(ul[i]), np.mean(ref_ul), rtol=1e-5)
    np.testing.assert_allclose(float(nll[i]), np.mean(ref_nll), rtol=1e-5)
  assert float(ul[0]) > 15  # -log(1 - p) with p ~ 1 - e^-36, not clipped


def answer_probs(model, tf, masks=None):
  out = model.apply(model.params, tf["batch"], masks=masks)
  logits = np.asarray(out.logits, np.float64)[np.arange(len(tf["last_prompt"])), tf["last_prompt"]]
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  return p[np.arange(len(p)), tf["answer_id"]]


def test_learned_masks_recover_planted_neurons(tmp_path):
  path = planted_llm.build(str(tmp_path / "planted"), HUES)
  model = mmneuron_jax.load_hf(path)
  inputs = LlavaNextInputs.from_pretrained(path)
  records = planted_llm.hue_records(HUES, 1)
  tf = teacher_forced(inputs, records, prompts.stats_prompt, load_image)
  groups = np.array([HUES.index(r.domain) for r in records])
  layers, width = model.probe_modules["llm"]
  before = answer_probs(model, tf, {"llm": np.ones((layers, width), np.float32)})  # same structure: one compile
  assert before.min() > 0.9  # the planted circuit answers every hue
  sets, history = lm.learn_group_sets(model, model.params, [tf], [groups], len(HUES), steps=50, lr=0.2,
                                      l0_weight=0.02, remat=False, progress=False)
  truth = planted_llm.planted_mask(len(HUES), layers, width, 2, 3)
  hit = (sets["llm"] & truth).sum()
  precision, recall = hit / max(sets["llm"].sum(), 1), hit / truth.sum()
  assert precision >= 0.9 and recall >= 0.9, (precision, recall)
  assert history["target_unlikelihood"].shape == (50, len(HUES))
  for g, hue in enumerate(HUES):
    p = answer_probs(model, tf, {"llm": np.where(sets["llm"][g], 0.0, 1.0).astype(np.float32)})
    assert p[groups == g].max() < 0.1, (hue, p)
    assert p[groups != g].min() > 0.9, (hue, p)
