"""Mistral's sliding-window attention (window shorter than the prompt) matches HF, in the
forward pass and in cached greedy decoding."""
import numpy as np
import torch

import hf_tiny
import mmneuron_jax


def test_sliding_window_logits_and_generation(tmp_path):
  hf = hf_tiny.build_llava_next(str(tmp_path), text="mistral", sliding_window=24)
  model = mmneuron_jax.load_hf(str(tmp_path))
  assert model.module.cfg.text.sliding_window == 24
  batch = hf_tiny.llava_next_batch(hf.config, [(40, 90), (60, 50)], [5, 9])
  assert batch["input_ids"].shape[1] > 24
  with torch.no_grad():
    ref = hf(**{k: torch.tensor(v) for k, v in batch.items()}).logits.numpy()
  valid = batch["attention_mask"].astype(bool)
  assert np.abs(np.asarray(model.apply(model.params, batch).logits)[valid] - ref[valid]).max() <= 1e-4
  left = hf_tiny.llava_next_batch(hf.config, [(40, 90), (60, 50)], [5, 9], pad_side="left")
  ours = model.generate(model.params, left, max_new_tokens=8, eos_token_id=-1)
  with torch.no_grad():
    theirs = hf.generate(**{k: torch.tensor(v) for k, v in left.items()}, max_new_tokens=8, min_new_tokens=8,
                         do_sample=False, eos_token_id=None, pad_token_id=0)
  np.testing.assert_array_equal(ours, theirs.numpy()[:, left["input_ids"].shape[1]:])
