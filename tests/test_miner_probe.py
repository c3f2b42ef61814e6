"""MINER stage 2 in the layer scan (`analysis/miner_probe.py`) on tiny Qwen2-VL and LLaVA-NeXT.

Reference: `miner.importance` on our captured activations (capture=('llm',)) and on attention
computed here from HF PyTorch: post-RoPE Q, K from forward hooks on HF's q_proj / k_proj plus
HF's own rotary cos/sin (caught from each attention call) and `apply_rotary_pos_emb`, then the
unmasked softmax in float64 numpy over the sample's own (unpadded) tokens, as the authors' batch-1
code sees them. Also: a padded batch row scores like the sample run alone (batch 1, no padding).
Tolerance: max-abs 1e-4 on the min-max-normalised scores (observed <= 1.2e-7 vs the HF reference,
<= 5e-7 padded row vs alone).
"""
import numpy as np
import pytest
import torch

import hf_tiny
import mmneuron_jax
import test_qwen2_vl_parity as qwen_tests
from mmneuron_jax.analysis import miner
from mmneuron_jax.analysis.miner_probe import MinerScores, head_mean_attention, scores_from_output

TOL = 1e-4
LLAVA_IDS = dict(special_ids=(1,), image_ids=(hf_tiny.IMAGE_TOKEN,), video_ids=(), audio_ids=())
QWEN_IDS = dict(special_ids=(1, qwen_tests.START, qwen_tests.END), image_ids=(qwen_tests.IMAGE,),
                video_ids=(qwen_tests.VIDEO,), audio_ids=())


def _llava(tmp):
  hf = hf_tiny.build_llava_next(tmp, kv_heads=2)
  batch = hf_tiny.llava_next_batch(hf.config, [(40, 90), (60, 50)], [5, 9])
  return hf, mmneuron_jax.load_hf(tmp), batch, LLAVA_IDS


def _qwen(tmp):
  hf = qwen_tests.build_hf(tmp, kv_heads=2)
  return hf, mmneuron_jax.load_hf(tmp), qwen_tests.make_batch(hf.config), QWEN_IDS


@pytest.fixture(scope="module", params=["llava_next", "qwen2_vl"])
def case(request, tmp_path_factory):
  build = {"llava_next": _llava, "qwen2_vl": _qwen}[request.param]
  hf, model, batch, ids = build(str(tmp_path_factory.mktemp(request.param)))
  probe = MinerScores.from_batch(batch, **ids)
  out = model.apply(model.params, batch, capture=("llm",), probe={"llm": probe})
  return hf, model, batch, ids, probe, out


def hf_attention(hf, batch):
  """Per layer, per row: float64[n, n] head-mean unmasked softmax(QK^T/sqrt(d)) over the row's
  n valid tokens (right padding), from HF's q_proj/k_proj outputs and HF's rotary."""
  layers = hf.model.language_model.layers
  attn0 = layers[0].self_attn
  rope = __import__(type(attn0).__module__, fromlist=["apply_rotary_pos_emb"]).apply_rotary_pos_emb
  rec = [dict() for _ in layers]
  handles = []
  for i, layer in enumerate(layers):
    att = layer.self_attn
    handles.append(att.q_proj.register_forward_hook(lambda m, a, o, i=i: rec[i].__setitem__("q", o.detach())))
    handles.append(att.k_proj.register_forward_hook(lambda m, a, o, i=i: rec[i].__setitem__("k", o.detach())))
    handles.append(att.register_forward_pre_hook(
        lambda m, a, kw, i=i: rec[i].__setitem__("pe", kw["position_embeddings"]), with_kwargs=True))
  try:
    with torch.no_grad():
      hf(**{k: torch.tensor(v) for k, v in batch.items()})
  finally:
    for h in handles:
      h.remove()
  cfg = hf.config.text_config
  heads, kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
  hd = cfg.hidden_size // heads
  lengths = batch["attention_mask"].sum(1)
  out = []
  for b, n in enumerate(lengths):
    per_layer = []
    for r in rec:
      q = r["q"][b:b + 1, :n].view(1, n, heads, hd).transpose(1, 2)
      k = r["k"][b:b + 1, :n].view(1, n, kv_heads, hd).transpose(1, 2)
      cos, sin = ((x[b:b + 1] if x.shape[0] > 1 else x)[:, :n] for x in r["pe"])  # [1 or B, T, hd]
      q, k = rope(q, k, cos, sin)
      q, k = q[0].double().numpy(), k[0].double().numpy()
      k = np.repeat(k, heads // kv_heads, axis=0)
      s = np.einsum("htd,hsd->hts", q, k) / np.sqrt(hd)
      p = np.exp(s - s.max(-1, keepdims=True))
      per_layer.append((p / p.sum(-1, keepdims=True)).mean(0))
    out.append(np.stack(per_layer))
  return out


def test_in_scan_scores_equal_importance_of_hf_attention(case):
  hf, model, batch, _, probe, out = case
  scores = np.asarray(scores_from_output(out))                     # [B, 5, M, L, F]
  L, F = model.probe_modules["llm"]
  B, T = batch["input_ids"].shape
  assert scores.shape == (B, 5, len(miner.MODALITIES), L, F)
  acts = np.asarray(out.aux["llm"])                                 # [L, B, T, F]
  masks = np.asarray(probe.token_masks)
  lengths = batch["attention_mask"].sum(1)
  assert lengths.min() < T  # one row is padded (right)
  for b, attn in enumerate(hf_attention(hf, batch)):
    n = lengths[b]
    assert not masks[b][:, n:].any()  # padding is in no modality
    ref = np.asarray(miner.importance(acts[:, b, :n], attn.astype(np.float32), masks[b][:, :n]))
    assert np.abs(scores[b] - ref).max() <= TOL, b
    present = masks[b].any(-1)
    assert (scores[b][:, ~present] == 0).all() and np.abs(scores[b][:, present]).max() > 0.5


def _single_row(model, batch, b):
  """Row b alone, without padding (its images only)."""
  n = int(batch["attention_mask"][b].sum())
  one = {"input_ids": batch["input_ids"][b:b + 1, :n], "attention_mask": batch["attention_mask"][b:b + 1, :n]}
  if "mm_token_type_ids" in batch:
    one["mm_token_type_ids"] = batch["mm_token_type_ids"][b:b + 1, :n]
  if "image_grid_thw" in batch:  # Qwen2-VL: patches of this row's images
    prepared = model.prepare(batch)
    images = np.nonzero(prepared["image_rows"] == b)[0]
    one["pixel_values"] = batch["pixel_values"][np.isin(prepared["patch_image"], images)]
    one["image_grid_thw"] = batch["image_grid_thw"][images]
  else:  # LLaVA-NeXT: one image per row
    one["pixel_values"], one["image_sizes"] = batch["pixel_values"][b:b + 1], batch["image_sizes"][b:b + 1]
  return one


def test_padded_row_equals_sample_alone(case):
  _, model, batch, ids, probe, out = case
  scores = np.asarray(scores_from_output(out))
  b = int(np.argmin(batch["attention_mask"].sum(1)))
  one = _single_row(model, batch, b)
  alone = model.apply(model.params, one, probe={"llm": MinerScores.from_batch(one, **ids)})
  ref = np.asarray(scores_from_output(alone))[0]
  err = np.abs(scores[b] - ref).max()
  # Without the key mask the padded row differs (padding keys enter the first softmax); the effect
  # is small (E = exp(A) of probabilities is nearly flat) but well above the masked error.
  unmasked = MinerScores(probe.token_masks, np.ones_like(batch["attention_mask"], bool))
  other = np.asarray(scores_from_output(model.apply(model.params, batch, probe={"llm": unmasked})))
  assert np.abs(other[b] - ref).max() > 10 * max(err, 1e-7)
  assert np.abs(other[1 - b] - scores[1 - b]).max() <= 1e-6  # the full-length row is unaffected


def test_head_mean_attention_gqa_and_errors():
  rng = np.random.default_rng(0)
  q, k = rng.normal(size=(2, 5, 4, 8)), rng.normal(size=(2, 5, 2, 8))
  valid = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], bool)
  got = np.asarray(head_mean_attention(q.astype(np.float32), k.astype(np.float32), valid))
  kk = np.repeat(k, 2, axis=2)
  s = np.einsum("bthd,bshd->bhts", q, kk) / np.sqrt(8)
  s = np.where(valid[:, None, None], s, -np.inf)
  p = np.exp(s - s.max(-1, keepdims=True))
  np.testing.assert_allclose(got, (p / p.sum(-1, keepdims=True)).mean(1), atol=1e-6)
  probe = MinerScores(np.ones((2, 7, 5), bool), valid)
  with pytest.raises(ValueError, match="post-RoPE q and k"):
    probe(np.ones((2, 5, 3), np.float32))
  with pytest.raises(ValueError, match="token_masks"):
    probe(np.ones((2, 6, 3), np.float32), q=q, k=k)
