"""HF-parity tests shared by the LLaVA-NeXT and LLaVA-OneVision parity files: our forward (plain,
captured, masked, logit lens) and greedy decoding against the HF model under `hf_hooks`.

The `test_*` functions here take the `pair` fixture, `(hf, model, batch, ...)`, of the file that
imports them; pytest collects and runs them there (this file is not collected by itself).
Tolerance: logits, activations, lens entropies and target log-probs max-abs <= TOL; top-k ids and
greedy tokens exactly equal."""
import numpy as np
import torch

import hf_hooks
from mmneuron_jax.analysis.logit_lens import Lens, positions_where

TOL = 1e-4


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
  """Captured llm neurons at real tokens, vision / projector neurons at real tiles, equal HF's hooks."""
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
  """Random 0/1 masks in our forward equal HF's hook zeroing (and change the logits)."""
  hf, model, batch, *_ = pair
  masks = hf_hooks.random_masks(model.probe_modules)
  out = model.apply(model.params, batch, masks=masks)
  ref, _ = run_hf(hf, batch, masks=masks)
  plain = model.apply(model.params, batch)
  valid = batch["attention_mask"].astype(bool)
  assert np.abs(np.asarray(out.logits)[valid] - ref.logits.numpy()[valid]).max() <= TOL
  assert np.abs(np.asarray(out.logits) - np.asarray(plain.logits))[valid].max() > 1e-3  # the mask did something


def test_logit_lens_matches_hf_hidden_states(pair):
  """The lens at every image token equals HF's hidden states through its norm and lm_head, layer
  by layer (entropy, top-5 ids, target log-prob); the last layer's top id is the model's argmax."""
  hf, model, batch, *_ = pair
  positions = positions_where(batch["input_ids"] == hf.config.image_token_index)
  targets = np.where(positions >= 0, 7, 0).astype(np.int32)
  out = model.apply(model.params, batch, lens=Lens(positions, targets, top_k=5))
  ref, _ = run_hf(hf, batch, output_hidden_states=True)
  lm = hf.model.language_model
  hs = ref.hidden_states  # embeddings, layers 1..L-1, final (already normed)
  n_layers = len(lm.layers)
  rows, cols = np.nonzero(positions >= 0)
  for layer in range(n_layers):
    h = hs[layer + 1]
    with torch.no_grad():
      logits = hf.lm_head(h if layer == n_layers - 1 else lm.norm(h)).numpy()
    sel = logits[rows, positions[rows, cols]].astype(np.float64)
    logp = sel - np.log(np.exp(sel - sel.max(-1, keepdims=True)).sum(-1, keepdims=True)) - sel.max(-1, keepdims=True)
    entropy = -(np.exp(logp) * logp).sum(-1)
    assert np.abs(np.asarray(out.lens["entropy"][layer])[rows, cols] - entropy).max() <= TOL, layer
    top = np.argsort(-logp, axis=-1, kind="stable")[:, :5]
    np.testing.assert_array_equal(np.asarray(out.lens["top_ids"][layer])[rows, cols], top)
    assert np.abs(np.asarray(out.lens["target_logprob"][layer])[rows, cols] - logp[:, 7]).max() <= TOL
  # The last layer's readout is the model's own output.
  final = np.asarray(out.logits)[rows, positions[rows, cols]]
  np.testing.assert_array_equal(np.asarray(out.lens["top_ids"][-1])[rows, cols][:, 0], final.argmax(-1))


def check_greedy_generation(hf, model, left_batch, new: int, masks=None):
  """`new` greedy tokens from a left-padded batch (masks, if any, on both sides) equal HF's."""
  ours = model.generate(model.params, left_batch, max_new_tokens=new, masks=masks, eos_token_id=-1)
  ref = hf_hooks.generate(hf, act_modules(hf), left_batch, new, masks, pad_token_id=0)
  np.testing.assert_array_equal(ours, ref[:, left_batch["input_ids"].shape[1]:])
