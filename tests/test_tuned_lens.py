"""Tuned lens: identity translators are the logit lens bit for bit (in the scan); a trained lens
reads closer to the final distribution on held-out samples; metrics match a plain-numpy reference;
translators round-trip through orbax by name."""
import numpy as np
import pytest

import mmneuron_jax
from mmneuron_jax.analysis import tuned_lens
from mmneuron_jax.io import tuned_lens as saved_lens
from mmneuron_jax.analysis.logit_lens import Lens
from mmneuron_jax.data.inputs import prompts
from mmneuron_jax.data.inputs.llava_next import LlavaNextInputs
from mmneuron_jax.data.sources.records import load_image
from mmneuron_jax.data.synthetic import demo
from mmneuron_jax.data.synthetic.demo_llava_next import build_demo_checkpoint
from mmneuron_jax.tasks.readouts.data import residuals_at, sample_positions, teacher_forced
from mmneuron_jax.tasks.readouts.lens import stage_tuned_lens


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  records = demo.demo_records(n_per_domain=3, seed=0)
  path = str(tmp_path_factory.mktemp("tl") / "ckpt")
  build_demo_checkpoint(path, [t for r in records for t in [r.question, *r.answers]])
  model = mmneuron_jax.load_hf(path)
  inputs = LlavaNextInputs.from_pretrained(path)
  tf = teacher_forced(inputs, records, prompts.stats_prompt, load_image, length_multiple=64)
  return model, inputs, records, tf


def np_readout(h, ro, translator=None):
  """Plain numpy: (h + h W + b) -> RMSNorm -> unembed -> log-probs, float64."""
  h = np.asarray(h, np.float64)
  if translator is not None:
    h = h + h @ np.asarray(translator["weight"], np.float64) + np.asarray(translator["bias"], np.float64)
  x = h / np.sqrt((h ** 2).mean(-1, keepdims=True) + ro["eps"]) * np.asarray(ro["norm_scale"], np.float64)
  logits = x @ np.asarray(ro["unembed"], np.float64)
  return logits, logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - logits.max(-1, keepdims=True)


def random_translators(layers, d, seed, scale=0.05):
  rng = np.random.default_rng(seed)
  return {"weight": (scale * rng.standard_normal((layers, d, d))).astype(np.float32),
          "bias": (scale * rng.standard_normal((layers, d))).astype(np.float32)}


def test_identity_tuned_lens_is_the_logit_lens_exactly(setup):
  model, _, _, tf = setup
  batch = tf["batch"]
  positions = sample_positions(batch["attention_mask"], 12, seed=0, extra=tf["last_prompt"])
  targets = np.maximum(np.asarray(batch["input_ids"])[np.arange(len(positions))[:, None], np.maximum(positions, 0)], 0)
  layers, d = model.probe_modules["llm"][0], model.module.cfg.text.hidden_size
  plain = model.apply(model.params, batch, lens=Lens(positions, targets, 5)).lens
  tuned = model.apply(model.params, batch, lens=Lens(positions, targets, 5,
                                                     translator=tuned_lens.identity_translators(layers, d))).lens
  assert set(plain) == set(tuned) == {"entropy", "top_ids", "top_probs", "target_logprob"}
  for k in plain:
    np.testing.assert_array_equal(np.asarray(tuned[k]), np.asarray(plain[k]), err_msg=k)
  # A non-trivial translator in the scan equals the numpy reference on captured residuals.
  t = random_translators(layers, d, seed=1)
  out = model.apply(model.params, batch, lens=Lens(positions, targets, 5, translator=t, hidden=True)).lens
  hidden = np.asarray(out["hidden"])  # [L, B, P, D], untranslated
  ro = tuned_lens.readout_of(model, model.params)
  valid = positions >= 0
  for layer in range(layers):
    _, logp = np_readout(hidden[layer][valid], ro, {k: v[layer] for k, v in t.items()})
    ent = -(np.exp(logp) * logp).sum(-1)
    np.testing.assert_allclose(np.asarray(out["entropy"][layer])[valid], ent, atol=1e-4)
    assert np.abs(ent - np.asarray(plain["entropy"][layer])[valid]).max() > 1e-3  # the map does something


def test_metrics_match_numpy_reference(setup):
  model, _, _, tf = setup
  positions = sample_positions(tf["batch"]["attention_mask"], 6, seed=3)
  hidden = residuals_at(model, model.params, tf["batch"], positions)[:, positions >= 0]
  layers, n, d = hidden.shape
  answers = np.random.default_rng(0).integers(-1, 40, n)
  ro = tuned_lens.readout_of(model, model.params)
  t = random_translators(layers, d, seed=2)
  got = tuned_lens.layer_metrics(t, hidden, ro, answers, top_k=3)
  final_logits, final = np_readout(hidden[-1], ro)
  for layer in range(layers):
    logits, logp = np_readout(hidden[layer], ro, {k: v[layer] for k, v in t.items()})
    np.testing.assert_allclose(got["entropy"][layer], -(np.exp(logp) * logp).sum(-1), atol=1e-4)
    np.testing.assert_allclose(got["kl"][layer], (np.exp(final) * (final - logp)).sum(-1), atol=1e-4)
    np.testing.assert_array_equal(got["top1_agree"][layer], (logits.argmax(-1) == final_logits.argmax(-1)))
    rank = (logits > logits[np.arange(n), np.maximum(answers, 0)][:, None]).sum(-1)
    np.testing.assert_array_equal(got["answer_rank"][layer], np.where(answers >= 0, rank, -1))
  plain = tuned_lens.layer_metrics(None, hidden, ro)
  assert np.abs(plain["kl"][-1]).max() < 1e-5  # the last layer's readout is the model's distribution


def test_training_lowers_heldout_kl(setup):
  model, _, records, tf = setup
  positions = sample_positions(tf["batch"]["attention_mask"], 24, seed=0)
  hidden = residuals_at(model, model.params, tf["batch"], positions)
  rows = np.repeat(np.arange(len(records))[:, None], positions.shape[1], 1)[positions >= 0]
  hidden = hidden[:, positions >= 0]
  held_rows = np.arange(len(records)) % 3 == 0  # whole samples held out
  train, held = ~held_rows[rows], held_rows[rows]
  ro = tuned_lens.readout_of(model, model.params)
  before = tuned_lens.layer_metrics(None, hidden[:, held], ro)["kl"].mean(axis=1)
  t, losses = tuned_lens.train(hidden[:, train], ro, steps=150, lr=3e-3, batch_size=128, progress=False)
  after = tuned_lens.layer_metrics(t, hidden[:, held], ro)["kl"].mean(axis=1)
  assert losses[-10:].mean() < losses[0]
  assert after[:-1].mean() < 0.7 * before[:-1].mean(), (before, after)
  assert (after[:-1] < before[:-1]).all(), (before, after)
  np.testing.assert_array_equal(np.asarray(t["weight"][-1]), 0.0)  # last layer stays the identity


def test_save_and_reload_by_name(tmp_path):
  t = random_translators(3, 8, seed=4)
  saved_lens.save(str(tmp_path), "demo_lens", t, {"model_id": "x"})
  back, meta = saved_lens.load(str(tmp_path), "demo_lens")
  assert meta["name"] == "demo_lens" and meta["layers"] == 3 and meta["hidden"] == 8 and meta["model_id"] == "x"
  for k in t:
    np.testing.assert_array_equal(np.asarray(back[k]), t[k])
  with pytest.raises(FileNotFoundError, match="demo_lens"):
    saved_lens.load(str(tmp_path), "nope")


def test_stage_reloads_a_saved_lens_by_name(setup, tmp_path):
  from mmneuron_jax.configs import readouts_demo
  model, inputs, records, _ = setup
  c = readouts_demo.get_config()
  c.tuned_lens.n_per_domain, c.tuned_lens.positions_per_sample, c.tuned_lens.steps = 2, 8, 10
  domains = list(c.data.domains)
  by_domain = {d: [r for r in records if r.domain == d] for d in domains}
  args = (model, model.params, inputs, by_domain, domains, prompts.stats_prompt)
  kw = dict(batch_size=10, heldout_frac=0.25, seed=0)
  trained = stage_tuned_lens(*args, c.tuned_lens, str(tmp_path), "demo", **kw)
  c.tuned_lens.load = "tuned_lens"  # a name under <workdir>/tuned_lens/
  loaded = stage_tuned_lens(*args, c.tuned_lens, str(tmp_path), "demo", **kw)
  assert loaded["loaded"] and not trained["loaded"] and loaded["dir"] == trained["dir"]
  for lens in ("logit", "tuned"):
    for kind, values in trained[lens].items():
      for k, v in values.items():
        np.testing.assert_array_equal(loaded[lens][kind][k], v, err_msg=f"{lens}/{kind}/{k}")
  assert trained["scan_vs_offline"] < 1e-4
