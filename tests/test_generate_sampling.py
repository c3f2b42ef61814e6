"""HF decoding settings (models/sampling.py) against HF's own logits processors, step by step.

Seeded draws cannot match torch's RNG, so the distribution maths is compared exactly: the processed
logits (same -inf entries, finite ones within 1e-5) and their softmax probabilities (1e-6), for
the repetition penalty, temperature, top-k and top-p in HF's order, over several decode steps with
the sequence growing. Token-exact generation against HF `generate` is in test_qwen2_vl_parity.py.
"""
import numpy as np
import pytest
import torch
from transformers.generation import logits_process as hf_lp

import jax.numpy as jnp

from mmneuron_jax.models import sampling

V = 64
SETTINGS = {
    "qwen2_vl_checkpoint": dict(do_sample=True, temperature=0.1, top_k=1, top_p=0.001, repetition_penalty=1.05),
    "qwen2_audio_checkpoint": dict(do_sample=True, temperature=0.7, top_k=20, top_p=0.5, repetition_penalty=1.1),
    "top_p_only": dict(do_sample=True, temperature=1.3, top_k=0, top_p=0.8, repetition_penalty=1.0),
    "greedy_penalty": dict(do_sample=False, repetition_penalty=1.5),
}


def hf_processors(s):
  """HF's list for these settings, built as transformers' generate builds it (processors, then warpers)."""
  out = []
  if s.get("repetition_penalty", 1.0) != 1.0:
    out.append(hf_lp.RepetitionPenaltyLogitsProcessor(penalty=s["repetition_penalty"]))
  if s["do_sample"]:
    if s.get("temperature", 1.0) != 1.0:
      out.append(hf_lp.TemperatureLogitsWarper(s["temperature"]))
    if s.get("top_k", 0):
      out.append(hf_lp.TopKLogitsWarper(top_k=s["top_k"], min_tokens_to_keep=1))
    if s.get("top_p", 1.0) < 1.0:
      out.append(hf_lp.TopPLogitsWarper(top_p=s["top_p"], min_tokens_to_keep=1))
  return hf_lp.LogitsProcessorList(out)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_processed_logits_match_hf_step_by_step(name):
  s = SETTINGS[name]
  rng = np.random.default_rng(0)
  ids = rng.integers(0, V, (3, 7))
  ids[1, :2] = ids[1, 2]                      # repeated ids count once
  ours_cfg = sampling.Sampling(**s)
  seen = sampling.seen_tokens(jnp.asarray(ids), jnp.ones(ids.shape, bool), V)
  hf = hf_processors(s)
  for step in range(4):
    logits = (rng.standard_normal((3, V)) * 3).astype(np.float32)
    logits[0, :5] = logits[0, 5]              # ties (top-k keeps every tie of the k-th value)
    ref = hf(torch.tensor(ids), torch.tensor(logits)).numpy()
    got = np.asarray(sampling.process_logits(jnp.asarray(logits), seen, ours_cfg))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
    finite = np.isfinite(ref)
    np.testing.assert_allclose(got[finite], ref[finite], rtol=1e-6, atol=1e-5)
    p_ref = torch.softmax(torch.tensor(ref), -1).numpy()
    p_got = np.asarray(jnp.exp(got - got.max(-1, keepdims=True)) / jnp.exp(got - got.max(-1, keepdims=True)).sum(-1,
                                                                                                        keepdims=True))
    np.testing.assert_allclose(p_got, p_ref, atol=1e-6)
    token = np.argmax(ref, -1)                 # grow the sequence as a decode step would
    ids = np.concatenate([ids, token[:, None]], 1)
    seen = sampling.add_token(seen, jnp.asarray(token, jnp.int32))


def test_penalty_counts_valid_positions_only():
  """Left padding (attention_mask 0) is not part of the sequence; generated -1 (after EOS) adds nothing."""
  ids = jnp.asarray([[0, 0, 5, 6], [7, 8, 9, 5]])
  valid = jnp.asarray([[False, False, True, True], [True, True, True, True]])
  seen = np.asarray(sampling.seen_tokens(ids, valid, 12))
  np.testing.assert_array_equal(np.nonzero(seen[0])[0], [5, 6])
  np.testing.assert_array_equal(np.nonzero(seen[1])[0], [5, 7, 8, 9])
  seen2 = np.asarray(sampling.add_token(jnp.asarray(seen), jnp.asarray([-1, 11], jnp.int32)))
  np.testing.assert_array_equal(seen2[0], seen[0])
  assert seen2[1, 11] and seen2[1].sum() == 5


def test_legacy_and_checkpoint_settings():
  assert sampling.Sampling.from_args(0.0) == sampling.Sampling()                       # greedy
  assert sampling.Sampling.from_args(0.9) == sampling.Sampling(do_sample=True, temperature=0.9)
  # HF GenerationConfig defaults: top_k 50 when the file does not say
  got = sampling.Sampling.from_generation_config({"do_sample": True, "temperature": 0.7})
  assert got == sampling.Sampling(do_sample=True, temperature=0.7, top_k=50)
  got = sampling.Sampling.from_generation_config({"top_k": 1, "repetition_penalty": 1.05})
  assert got == sampling.Sampling(repetition_penalty=1.05, top_k=1)
  with pytest.raises(ValueError, match="temperature"):
    sampling.Sampling(do_sample=True, temperature=0.0)
