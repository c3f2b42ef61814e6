"""LLaVA-NeXT parity with HF PyTorch on tiny random configs (fp32).

Tolerances: logits and activations max-abs <= 1e-4; lens entropies <= 1e-4 nats;
top-k ids and greedy tokens exactly equal.
"""
import numpy as np
import pytest
import torch

import hf_hooks
import hf_tiny
import mmneuron_jax
from mmneuron_jax.analysis.logit_lens import Lens, positions_where

TOL = 1e-4
VARIANTS = {
    # name: (build kwargs, image sizes (h, w), text lengths)
    "llama_gqa_wide": (dict(text="llama", kv_heads=2), [(40, 90), (60, 50)], [5, 9]),
    "llama_mha_tall": (dict(text="llama", kv_heads=4, pinpoints=hf_tiny.PINPOINTS_TALL), [(30, 100), (70, 64)],
                       [7, 3]),
    "mistral_gqa_tied": (dict(text="mistral", kv_heads=1, tie=True, feature_layer=-1), [(50, 50), (20, 77)],
                         [4, 8]),
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def pair(request, tmp_path_factory):
  kwargs, sizes, text_lens = VARIANTS[request.param]
  path = str(tmp_path_factory.mktemp(request.param))
  hf = hf_tiny.build_llava_next(path, **kwargs)
  model = mmneuron_jax.load_hf(path)
  pinpoints = kwargs.get("pinpoints", hf_tiny.PINPOINTS_WIDE)
  batch = hf_tiny.llava_next_batch(hf.config, sizes, text_lens, pinpoints=pinpoints)
  return hf, model, batch, pinpoints, sizes, text_lens


def act_modules(hf):
  """HF modules whose forward output is each probe module's neuron activation, per layer."""
  inner = hf.model
  return {
      "llm": [layer.mlp.act_fn for layer in inner.language_model.layers],
      "vision": [layer.mlp.activation_fn for layer in inner.vision_tower.encoder.layers],
      "projector": [inner.multi_modal_projector.act],
  }


def run_hf(hf, batch, masks=None, output_hidden_states=False):
  """HF forward with hooks that record (and, given masks, zero) neuron activations."""
  return hf_hooks.run_hf(hf, act_modules(hf), batch, masks, output_hidden_states=output_hidden_states)


def test_logits_match(pair):
  hf, model, batch, *_ = pair
  out = model.apply(model.params, batch)
  ref, _ = run_hf(hf, batch)
  valid = batch["attention_mask"].astype(bool)
  assert out.logits.shape == ref.logits.shape
  assert np.abs(np.asarray(out.logits)[valid] - ref.logits.numpy()[valid]).max() <= TOL


def test_captured_activations_match(pair):
  hf, model, batch, *_ = pair
  out = model.apply(model.params, batch, capture=("llm", "vision", "projector"))
  _, rec = run_hf(hf, batch)
  valid = batch["attention_mask"].astype(bool)
  ours = np.asarray(out.aux["llm"])
  assert ours.shape[:3] == (model.probe_modules["llm"][0],) + valid.shape
  assert np.abs(ours[:, valid] - rec["llm"][:, valid]).max() <= TOL
  tiles = model.prepare(batch)["tile_valid"]
  for name in ("vision", "projector"):
    mine = np.asarray(out.aux[name])[:, tiles]
    assert mine.shape == rec[name].shape, name
    assert mine.shape[-1] == model.probe_modules[name][1]
    assert np.abs(mine - rec[name]).max() <= TOL, name



def test_masked_forward_matches_hook_zeroing(pair):
  hf, model, batch, *_ = pair
  masks = hf_hooks.random_masks(model.probe_modules)
  out = model.apply(model.params, batch, masks=masks)
  ref, _ = run_hf(hf, batch, masks=masks)
  plain = model.apply(model.params, batch)
  valid = batch["attention_mask"].astype(bool)
  assert np.abs(np.asarray(out.logits)[valid] - ref.logits.numpy()[valid]).max() <= TOL
  assert np.abs(np.asarray(out.logits) - np.asarray(plain.logits))[valid].max() > 1e-3  # the mask did something


def test_affine_masks_match_hf_hooks(pair):
  """(scale, offset) masks (MINER's 'set to the minimum') in apply and generate equal HF hooks."""
  hf, model, batch, pinpoints, sizes, text_lens = pair
  rng = np.random.default_rng(5)
  masks = {name: ((rng.random(shape) > 0.1).astype(np.float32), rng.normal(size=shape).astype(np.float32) * 0.1)
           for name, shape in model.probe_modules.items()}
  out = model.apply(model.params, batch, masks=masks)
  ref, _ = run_hf(hf, batch, masks=masks)
  valid = batch["attention_mask"].astype(bool)
  assert np.abs(np.asarray(out.logits)[valid] - ref.logits.numpy()[valid]).max() <= TOL
  left = hf_tiny.llava_next_batch(hf.config, sizes, text_lens, pad_side="left", pinpoints=pinpoints)
  ours = model.generate(model.params, left, max_new_tokens=4, masks=masks, eos_token_id=-1)
  theirs = hf_hooks.generate(hf, act_modules(hf), left, 4, masks, pad_token_id=0)
  np.testing.assert_array_equal(ours, theirs[:, left["input_ids"].shape[1]:])


def test_logit_lens_matches_hf_hidden_states(pair):
  hf, model, batch, *_ = pair
  image = batch["input_ids"] == hf_tiny.IMAGE_TOKEN
  positions = positions_where(image)
  targets = np.where(positions >= 0, 7, 0).astype(np.int32)
  out = model.apply(model.params, batch, lens=Lens(positions, targets, top_k=5))
  ref, _ = run_hf(hf, batch, output_hidden_states=True)
  lm = hf.model.language_model
  hs = ref.hidden_states  # embeddings, layers 1..L-1, final (already normed)
  n_layers = len(lm.layers)
  valid = positions >= 0
  rows, cols = np.nonzero(valid)
  for layer in range(n_layers):
    h = hs[layer + 1]
    with torch.no_grad():
      logits = hf.lm_head(h if layer == n_layers - 1 else lm.norm(h)).numpy()
    sel = logits[rows, positions[rows, cols]].astype(np.float64)
    logp = sel - np.log(np.exp(sel - sel.max(-1, keepdims=True)).sum(-1, keepdims=True)) - sel.max(-1, keepdims=True)
    entropy = -(np.exp(logp) * logp).sum(-1)
    got = np.asarray(out.lens["entropy"][layer])[rows, cols]
    assert np.abs(got - entropy).max() <= TOL, layer
    top = np.argsort(-logp, axis=-1, kind="stable")[:, :5]
    np.testing.assert_array_equal(np.asarray(out.lens["top_ids"][layer])[rows, cols], top)
    assert np.abs(np.asarray(out.lens["target_logprob"][layer])[rows, cols] - logp[:, 7]).max() <= TOL
  # The last layer's readout is the model's own output.
  final = np.asarray(out.logits)[rows, positions[rows, cols]]
  np.testing.assert_array_equal(np.asarray(out.lens["top_ids"][-1])[rows, cols][:, 0], final.argmax(-1))


@pytest.mark.parametrize("masked", [False, True])
def test_greedy_generation_matches_hf(pair, masked):
  hf, model, _, pinpoints, sizes, text_lens = pair
  batch = hf_tiny.llava_next_batch(hf.config, sizes, text_lens, pad_side="left", pinpoints=pinpoints)
  masks = hf_hooks.random_masks(model.probe_modules, seed=3) if masked else None
  new = 10
  ours = model.generate(model.params, batch, max_new_tokens=new, masks=masks, eos_token_id=-1)
  ref = hf_hooks.generate(hf, act_modules(hf), batch, new, masks, pad_token_id=0)
  np.testing.assert_array_equal(ours, ref[:, batch["input_ids"].shape[1]:])
