"""LLaVA-NeXT parity with HF PyTorch on tiny random configs (fp32).

Tolerances: logits and activations max-abs <= 1e-4; lens entropies <= 1e-4 nats;
top-k ids and greedy tokens exactly equal.
"""
import numpy as np
import pytest

import hf_hooks
import hf_tiny
import llava_parity as lp
import mmneuron_jax
# the HF-parity tests shared with the other LLaVA family: collected here, on this file's `pair` fixture
from llava_parity import (test_captured_activations_match, test_logit_lens_matches_hf_hidden_states,  # noqa: F401
                          test_logits_match, test_masked_forward_matches_hook_zeroing)

TOL = lp.TOL
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


def test_affine_masks_match_hf_hooks(pair):
  """(scale, offset) masks (MINER's 'set to the minimum') in apply and generate equal HF hooks."""
  hf, model, batch, pinpoints, sizes, text_lens = pair
  rng = np.random.default_rng(5)
  masks = {name: ((rng.random(shape) > 0.1).astype(np.float32), rng.normal(size=shape).astype(np.float32) * 0.1)
           for name, shape in model.probe_modules.items()}
  out = model.apply(model.params, batch, masks=masks)
  ref, _ = lp.run_hf(hf, batch, masks=masks)
  valid = batch["attention_mask"].astype(bool)
  assert np.abs(np.asarray(out.logits)[valid] - ref.logits.numpy()[valid]).max() <= TOL
  left = hf_tiny.llava_next_batch(hf.config, sizes, text_lens, pad_side="left", pinpoints=pinpoints)
  lp.check_greedy_generation(hf, model, left, 4, masks)


@pytest.mark.parametrize("masked", [False, True])
def test_greedy_generation_matches_hf(pair, masked):
  hf, model, _, pinpoints, sizes, text_lens = pair
  batch = hf_tiny.llava_next_batch(hf.config, sizes, text_lens, pad_side="left", pinpoints=pinpoints)
  masks = hf_hooks.random_masks(model.probe_modules, seed=3) if masked else None
  lp.check_greedy_generation(hf, model, batch, 10, masks)
