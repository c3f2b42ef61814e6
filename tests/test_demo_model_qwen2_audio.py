"""The tiny Qwen2-Audio demo checkpoint: deterministic, loads through `load_hf` and HF alike
(fp32 logits max-abs <= 1e-4 on a chat batch of four), and its remapped special-token ids
agree between tokenizer, config and the MINER stage-1 id sets."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

import mmneuron_jax
from mmneuron_jax.analysis import miner
from mmneuron_jax.data.inputs.qwen2_audio import Qwen2AudioInputs
from mmneuron_jax.data.synthetic import demo_qwen2_audio as demo

TEXTS = ["What sound is this?", "Transcribe the audio.", "Is it a cough or a laugh?"]
SECONDS = (0.4, 1.1, 2.6, 0.75)  # the 2.6 s one is cut to the 2 s chunk


def waveforms(seed=0):
  rng = np.random.default_rng(seed)
  return [(0.2 * np.sin(2 * np.pi * 330 * np.arange(int(s * 16000)) / 16000)
           + 0.05 * rng.standard_normal(int(s * 16000))).astype(np.float32) for s in SECONDS]


def prompts():
  chat = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nAudio 1: <audio>\n{}<|im_end|>\n"
  return [chat.format(t) + "<|im_start|>assistant\n" for t in TEXTS + TEXTS[:1]]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
  return demo.build_demo_checkpoint(str(tmp_path_factory.mktemp("qwen2_audio_demo")), TEXTS)


def test_deterministic(demo_dir, tmp_path):
  other = demo.build_demo_checkpoint(str(tmp_path), TEXTS)
  for name in ("model.safetensors", "config.json", "tokenizer.json", "preprocessor_config.json"):
    with open(os.path.join(demo_dir, name), "rb") as a, open(os.path.join(other, name), "rb") as b:
      assert a.read() == b.read(), name


def test_loads_and_matches_hf(demo_dir):
  import torch
  import transformers
  model = mmneuron_jax.load_hf(demo_dir)
  inputs = Qwen2AudioInputs.from_pretrained(demo_dir)
  batch = inputs(prompts(), [[w] for w in waveforms()])
  assert batch["input_features"].shape == (4, demo.MEL_BINS, 200)
  np.testing.assert_array_equal((batch["input_ids"] == demo.IDS["<|AUDIO|>"]).sum(-1), [10, 27, 50, 19])
  out = model.apply(model.params, batch, capture=("audio",))
  assert out.aux["audio"].shape == (2, 4, 100, 96)
  hf = transformers.Qwen2AudioForConditionalGeneration.from_pretrained(demo_dir, attn_implementation="eager").eval()
  with torch.no_grad():
    ref = hf(**{k: torch.tensor(v) for k, v in batch.items()}).logits.numpy()
  valid = batch["attention_mask"].astype(bool)
  assert np.abs(np.asarray(out.logits)[valid] - ref[valid]).max() <= 1e-4
  # MINER stage 1 with the family's config-derived ids = the tokenizer's special tokens.
  cfg = model.module.cfg
  special = [inputs.tokenizer.convert_tokens_to_ids(t) for t in demo.SPECIAL[1:6] if t != "<|AUDIO|>"]
  assert cfg.modality_token_ids["special_ids"] == tuple(special)
  masks = np.asarray(miner.token_modality_masks(batch["input_ids"], None, batch["attention_mask"],
                                                **cfg.modality_token_ids))
  np.testing.assert_array_equal(masks[miner.MODALITY_INDEX["special"]], np.isin(batch["input_ids"], special) & valid)
  np.testing.assert_array_equal(masks[miner.MODALITY_INDEX["audio"]], (batch["input_ids"] == 3) & valid)
  assert masks[miner.MODALITY_INDEX["text"]].any()
