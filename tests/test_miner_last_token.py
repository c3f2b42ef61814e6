"""MINER Finding III probe (`analysis/miner_last_token.py`) on a tiny Qwen2-VL (GQA 4/2, M-RoPE, two
images in one row) against HF PyTorch eager attention with `output_attentions=True`: the last valid
token's attention row, averaged over heads, per layer, for right and left padding, with no neuron
changed and with random LLM neurons zeroed (HF: forward hooks on the MLP activation). Tolerance:
max-abs 1e-5 on attention probabilities (float32 both sides; observed ~1e-7). The per-modality masses
are checked against a plain loop over positions, and sum to 1 over the partition text / special / image.
"""
import numpy as np
import pytest

import hf_hooks
import mmneuron_jax
import test_qwen2_vl_parity as qwen_tests
from mmneuron_jax.analysis import miner
from mmneuron_jax.analysis.miner_last_token import LastTokenAttention, last_token_row, modality_mass

TOL = 1e-5


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("qwen2_vl_last_token"))
  hf = qwen_tests.build_hf(path, kv_heads=2)
  return hf, mmneuron_jax.load_hf(path)


def hf_rows(hf, batch, masks=None):
  """float64[L, B, T]: HF's head-mean attention row of each row's last valid token."""
  out, _ = hf_hooks.run_hf(hf, qwen_tests.act_modules(hf), batch, masks, output_attentions=True)
  valid = np.asarray(batch["attention_mask"]) != 0
  last = [int(np.flatnonzero(v)[-1]) for v in valid]
  return np.stack([np.stack([a[b, :, last[b], :].double().numpy().mean(0) for b in range(len(last))])
                   for a in out.attentions])


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("masked", [False, True])
def test_rows_match_hf_eager(pair, side, masked):
  hf, model = pair
  batch = qwen_tests.make_batch(hf.config, side)
  masks = {"llm": hf_hooks.random_masks({"llm": model.probe_modules["llm"]}, rate=0.3, seed=3)["llm"]} if masked else None
  probe = LastTokenAttention(attention_mask=np.asarray(batch["attention_mask"]) != 0)
  ours = np.asarray(model.apply(model.params, batch, masks=masks, probe={"llm": probe}).probe["llm"])
  ref = hf_rows(hf, batch, masks)
  assert ours.shape == ref.shape
  np.testing.assert_allclose(ours, ref, rtol=0, atol=TOL)
  np.testing.assert_allclose(ours.sum(-1), 1.0, atol=1e-5)
  if masked:  # the masks change the rows (the check is not vacuous)
    assert np.abs(ours - hf_rows(hf, batch)).max() > 1e-3


def test_mass_is_the_sum_over_each_modality(pair):
  hf, model = pair
  batch = qwen_tests.make_batch(hf.config, "right")
  probe = LastTokenAttention(attention_mask=np.asarray(batch["attention_mask"]) != 0)
  rows = np.asarray(model.apply(model.params, batch, probe={"llm": probe}).probe["llm"])
  ids = dict(special_ids=(1, qwen_tests.START, qwen_tests.END), image_ids=(qwen_tests.IMAGE,),
             video_ids=(qwen_tests.VIDEO,), audio_ids=())
  prepared = model.prepare(batch)
  tm = np.swapaxes(np.asarray(miner.token_modality_masks(prepared["input_ids"], None, prepared["attention_mask"], **ids)),
                   0, 1)                                                         # [B, 7, T]
  mass = modality_mass(rows, tm)
  L, B, T = rows.shape
  for l in range(L):
    for b in range(B):
      for m in range(tm.shape[1]):
        assert abs(mass[l, b, m] - sum(float(rows[l, b, t]) for t in range(T) if tm[b, m, t])) < 1e-12
  part = [miner.MODALITY_INDEX[m] for m in ("text", "special", "image", "video", "audio")]
  np.testing.assert_allclose(mass[:, :, part].sum(-1), 1.0, atol=1e-5)
  assert (mass[:, :, miner.MODALITY_INDEX["image"]] > 0).all()


def test_row_of_a_hand_computed_case():
  """One row, 2 heads over 1 key head, 4 positions with the last one padding (so last = 2)."""
  rng = np.random.default_rng(0)
  q = rng.normal(size=(1, 4, 2, 3)).astype(np.float32)
  k = rng.normal(size=(1, 4, 1, 3)).astype(np.float32)
  valid = np.array([[True, True, True, False]])
  row = np.asarray(last_token_row(q, k, valid))[0]
  ref = np.zeros(4)
  for h in range(2):
    s = np.array([q[0, 2, h] @ k[0, t, 0] / np.sqrt(3) for t in range(3)], np.float64)
    ref[:3] += np.exp(s - s.max()) / np.exp(s - s.max()).sum() / 2
  np.testing.assert_allclose(row, ref, atol=1e-6)
