"""LLaVA-OneVision parity with HF PyTorch on tiny random configs (fp32).

The configs exercise anyres-max packing with the bilinear shrink (`vision_aspect_ratio`
'anyres_max_1' / '_2': a 2x2 or 3x3 tile grid holds more than 1.1x the budget) and without it.
Tolerances: logits and activations max-abs <= 1e-4; lens entropies <= 1e-4 nats;
top-k ids and greedy tokens exactly equal.
"""
import numpy as np
import pytest
import transformers

import hf_hooks
import hf_tiny
import llava_parity as lp
import mmneuron_jax
# the HF-parity tests shared with the other LLaVA family: collected here, on this file's `pair` fixture
from llava_parity import (test_captured_activations_match, test_logit_lens_matches_hf_hidden_states,  # noqa: F401
                          test_logits_match, test_masked_forward_matches_hook_zeroing)
from mmneuron_jax.data.inputs.batching import pad_rows
from mmneuron_jax.models.mllm import llava_onevision as ov

IMAGE_TOKEN = 300
PINPOINTS = [[28, 28], [28, 56], [56, 28], [56, 56], [28, 84], [84, 84]]
VARIANTS = {
    # name: (config kwargs, image sizes (h, w), text lengths, greedy decoding under random masks);
    # (28, 28) fits one tile: no shrink
    "max1_gqa": (dict(aspect="anyres_max_1", kv_heads=2), [(60, 64), (30, 100)], [5, 9], False),
    "max2_two_layers_tied": (dict(aspect="anyres_max_2", kv_heads=1, feature_layer=[-1, -2], tie=True),
                             [(90, 88), (28, 28)], [7, 3], True),
}


def tiny_config(aspect, kv_heads, feature_layer=-1, tie=False):
  """A tiny LLaVA-OneVision: 28 px tiles of 7 px patches (16 patches a tile), odd MLP widths,
  a Qwen2 decoder (q/k/v biases)."""
  text = transformers.Qwen2Config(vocab_size=320, hidden_size=64, intermediate_size=88, num_hidden_layers=3,
                                  num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=512,
                                  rms_norm_eps=1e-5, rope_theta=1e6, tie_word_embeddings=tie, bos_token_id=1,
                                  eos_token_id=2, pad_token_id=0)
  vision = transformers.SiglipVisionConfig(hidden_size=32, intermediate_size=52, num_hidden_layers=3,
                                           num_attention_heads=4, image_size=28, patch_size=7, vision_use_head=False)
  return transformers.LlavaOnevisionConfig(vision_config=vision, text_config=text, image_token_index=IMAGE_TOKEN,
                                           video_token_index=301, image_grid_pinpoints=PINPOINTS,
                                           vision_feature_layer=feature_layer, vision_aspect_ratio=aspect,
                                           vision_feature_select_strategy="full", tie_word_embeddings=tie)


def build(path, seed=0, **kwargs):
  """Save a random tiny LLaVA-OneVision to `path` (norms and biases moved off their init); returns the
  HF model (fp32, eval, eager attention)."""
  return hf_tiny.save_random(path, transformers.LlavaOnevisionForConditionalGeneration, tiny_config(**kwargs), seed,
                             biases=True)


def image_processor():
  return transformers.LlavaOnevisionImageProcessorPil(size={"height": 28, "width": 28},
                                                      image_grid_pinpoints=PINPOINTS)


def batch_for(config, sizes_hw, text_lens, pad_side="right", seed=0):
  """One image per row: [BOS] <image>*n [text tokens]; padded to a common length. Returns numpy dict."""
  pix = image_processor()(hf_tiny.random_images(sizes_hw, seed), return_tensors="np")
  rng = np.random.default_rng(seed + 1)
  aspect = int(config.vision_aspect_ratio[len("anyres_max_"):])
  rows = []
  for size, n_text in zip(pix["image_sizes"], text_lens):
    n_img = ov.num_image_tokens(size, PINPOINTS, 28, 4, aspect)
    rows.append([1] + [IMAGE_TOKEN] * n_img + list(rng.integers(3, 299, n_text)))
  ids, mask = pad_rows(rows, 0, pad_side)
  return {"input_ids": ids, "attention_mask": mask, "pixel_values": pix["pixel_values"].astype(np.float32),
          "image_sizes": pix["image_sizes"]}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def pair(request, tmp_path_factory):
  kwargs, sizes, text_lens, _ = VARIANTS[request.param]
  path = str(tmp_path_factory.mktemp(request.param))
  hf = build(path, **kwargs)
  model = mmneuron_jax.load_hf(path)
  batch = batch_for(hf.config, sizes, text_lens)
  return hf, model, batch, sizes, text_lens, VARIANTS[request.param][3]


def test_token_count_equals_hf_processor():
  """Our image-token count per image size equals HF's processor (`_get_number_of_features`)."""
  count = transformers.LlavaOnevisionProcessor._get_number_of_features
  for aspect in (1, 2, 9):
    fake = type("P", (), {"image_processor": image_processor(), "num_image_tokens": 16,
                          "vision_aspect_ratio": f"anyres_max_{aspect}",
                          "_get_unpadded_features": transformers.LlavaOnevisionProcessor._get_unpadded_features})()
    for h, w in [(60, 64), (30, 100), (90, 88), (40, 90), (50, 50), (20, 77), (300, 17), (17, 300)]:
      assert ov.num_image_tokens((h, w), PINPOINTS, 28, 4, aspect) == count(fake, h, w, 28, 28), (aspect, h, w)


def test_shrink_path_is_exercised(pair):
  """Both configs shrink some image with the bilinear weights (fractional weights appear)."""
  _, model, batch, *_ = pair
  assert (model.prepare(batch)["feature_weights"] % 1 != 0).any()


def test_greedy_generation_matches_hf(pair):
  """Left-padded greedy decoding, plain in one config and under random masks in the other."""
  hf, model, _, sizes, text_lens, masked = pair
  batch = batch_for(hf.config, sizes, text_lens, pad_side="left")
  masks = hf_hooks.random_masks(model.probe_modules, seed=3) if masked else None
  lp.check_greedy_generation(hf, model, batch, 6, masks)
