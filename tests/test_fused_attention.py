"""The fused attention path (`Policy.attention='fused'`: `jax.nn.dot_product_attention`, the masks
and code path of 'cudnn' with XLA's kernel, so it runs here) equals the materialised path.

Unit level: `attend` under right-padded `CausalMask`s (is_causal + key lengths), left-padded ones
(the bias branch of the same jit), plain biases and GQA. Model level, one tiny random HF model per
family (decoder, CLIP / EVA / Qwen2-ViT / Whisper encoders), fp32: logits at real tokens and every
captured neuron agree with the 'xla' policy to 2e-5 (the kernels sum in different orders), with right
and left padding; greedy tokens are equal (LLaVA-NeXT).
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hf_tiny
import mmneuron_jax
from mmneuron_jax.nn.attention import CausalMask, attend, causal_mask, fused_supported
from mmneuron_jax.nn.policy import Policy

TOL = 2e-5


def qkv(b=3, t=7, h=4, kv=2, hd=8, seed=0):
  rng = np.random.default_rng(seed)
  q = rng.standard_normal((b, t, h, hd)).astype(np.float32)
  k, v = (rng.standard_normal((b, t, kv, hd)).astype(np.float32) for _ in range(2))
  return jnp.asarray(q), jnp.asarray(k), jnp.asarray(v)


def padded_mask(lengths, t, side):
  am = np.zeros((len(lengths), t), np.int32)
  for i, n in enumerate(lengths):
    am[i, slice(0, n) if side == "right" else slice(t - n, t)] = 1
  return jnp.asarray(am)


@pytest.mark.parametrize("side", ["right", "left"])
def test_causal_mask_flags_right_padding(side):
  m = causal_mask(padded_mask([7, 4, 2], 7, side))
  assert bool(m.right_padded) == (side == "right")
  np.testing.assert_array_equal(np.asarray(m.kv_len), [7, 4, 2])
  assert bool(causal_mask(jnp.ones((2, 5), jnp.int32)).right_padded)
  empty = causal_mask(padded_mask([3, 0], 5, "right"))
  assert bool(empty.right_padded) and list(np.asarray(empty.kv_len)) == [3, 1]  # clamped: no all-masked row


@pytest.mark.parametrize("side", ["right", "left"])
def test_fused_equals_materialised_under_causal_mask(side):
  q, k, v = qkv()
  mask = causal_mask(padded_mask([7, 5, 3], 7, side))
  ref, probs = attend(q, k, v, mask, jax.lax.Precision.HIGHEST, "xla")
  out, none = jax.jit(lambda *a: attend(*a, mask, jax.lax.Precision.HIGHEST, "fused"))(q, k, v)
  assert none is None and probs.shape == (3, 4, 7, 7)
  valid = np.asarray(padded_mask([7, 5, 3], 7, side), bool)
  assert np.abs(np.asarray(out)[valid] - np.asarray(ref)[valid]).max() <= 1e-5
  # padded queries see the same keys in both forms too (right padding: every valid key)
  if side == "right":
    assert np.abs(np.asarray(out) - np.asarray(ref)).max() <= 1e-5


def test_fused_takes_broadcast_biases():
  """Encoder biases: key padding float32[N, 1, S] (Whisper) and one shared [1, T, S] (Qwen2-ViT)."""
  q, k, v = qkv(kv=4)
  rng = np.random.default_rng(1)
  for bias in (jnp.asarray(np.where(rng.random((3, 1, 7)) < 0.3, -1e30, 0.0), jnp.float32),
               jnp.asarray(rng.standard_normal((1, 7, 7)), jnp.float32), None):
    ref, _ = attend(q, k, v, bias, jax.lax.Precision.HIGHEST, "xla")
    out, _ = attend(q, k, v, bias, jax.lax.Precision.HIGHEST, "fused")
    assert np.abs(np.asarray(out) - np.asarray(ref)).max() <= 1e-5


def test_cudnn_falls_back_where_cudnn_cannot_run():
  q, k, v = qkv()
  assert not fused_supported(q)  # float32
  assert fused_supported(q.astype(jnp.bfloat16)) and not fused_supported(jnp.zeros((1, 2, 1, 12), jnp.bfloat16))
  mask = causal_mask(padded_mask([7, 5, 3], 7, "right"))
  out, probs = attend(q, k, v, mask, jax.lax.Precision.HIGHEST, "cudnn")  # fp32: the materialised path
  assert probs is not None and isinstance(mask, CausalMask)


def test_policy_accepts_fused_in_float32():
  assert Policy(attention="fused").attention == "fused"
  with pytest.raises(ValueError, match="'xla', 'cudnn' or 'fused'"):
    Policy(attention="flash")


# ----------------------------------------------------------------------------- every family


def _llava(path):
  hf = hf_tiny.build_llava_next(path, text="llama", kv_heads=2)
  return hf, lambda side: hf_tiny.llava_next_batch(hf.config, [(40, 90), (60, 50)], [5, 9], pad_side=side)


def _qwen2_vl(path):
  import test_qwen2_vl_parity as t
  hf = t.build_hf(path)
  return hf, lambda side: t.make_batch(hf.config, side)


def _instructblip(path):
  import test_instructblip_parity as t
  hf = t.build_instructblip(path, sorted(t.VARIANTS)[0])
  return hf, lambda side: t.make_batch(pad_side=side)


def _qwen2_audio(path):
  import test_qwen2_audio_parity as t
  hf = t.build_hf(path)
  return hf, lambda side: t.make_batch(hf.config, side)


FAMILIES = {"llava_next": _llava, "qwen2_vl": _qwen2_vl, "instructblip": _instructblip, "qwen2_audio": _qwen2_audio}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def models(request, tmp_path_factory):
  path = str(tmp_path_factory.mktemp(request.param))
  _, make_batch = FAMILIES[request.param](path)
  return mmneuron_jax.load_hf(path), mmneuron_jax.load_hf(path, attention="fused"), make_batch


@pytest.mark.parametrize("side", ["right", "left"])
def test_fused_model_equals_materialised(models, side):
  ref_model, fused_model, make_batch = models
  batch = make_batch(side)
  capture = tuple(ref_model.probe_modules)
  ref = ref_model.apply(ref_model.params, batch, capture=capture)
  out = fused_model.apply(fused_model.params, batch, capture=capture)
  valid = np.asarray(batch["attention_mask"], bool)
  assert np.abs(np.asarray(out.logits)[valid] - np.asarray(ref.logits)[valid]).max() <= TOL
  for name in capture:
    a, b = np.asarray(out.aux[name]), np.asarray(ref.aux[name])
    if name == "llm":
      a, b = a[:, valid], b[:, valid]
    assert np.abs(a - b).max() <= TOL * max(1.0, np.abs(b).max()), name


def test_fused_generation_equals_materialised(models):
  """Left-padded prefill (the bias branch) + cached decode steps (plain biases); the decoder code
  is shared by every family, so one family is enough."""
  ref_model, fused_model, make_batch = models
  if ref_model.family != "llava_next":
    pytest.skip("decoder generation is covered on llava_next")
  batch = make_batch("left")
  ref = ref_model.generate(ref_model.params, batch, max_new_tokens=4)
  out = fused_model.generate(fused_model.params, batch, max_new_tokens=4)
  np.testing.assert_array_equal(np.asarray(out), np.asarray(ref))
