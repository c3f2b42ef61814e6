"""Tiny random HF models built locally (no downloads), saved with save_pretrained."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
import transformers

PINPOINTS_WIDE = [[28, 56], [56, 28], [56, 56]]
PINPOINTS_TALL = [[28, 84], [84, 28], [56, 56], [28, 28]]
IMAGE_TOKEN = 300


def llava_next_config(text="llama", kv_heads=2, pinpoints=PINPOINTS_WIDE, feature_layer=-2, tie=False,
                      sliding_window=None):
  """A tiny LLaVA-NeXT config: 28px tiles of 7px patches (16 patches a tile), odd MLP widths."""
  text_kwargs = dict(vocab_size=320, hidden_size=64, intermediate_size=88, num_hidden_layers=3,
                     num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=512,
                     rms_norm_eps=1e-5, tie_word_embeddings=tie, bos_token_id=1, eos_token_id=2, pad_token_id=0)
  if text == "llama":
    text_config = transformers.LlamaConfig(**text_kwargs)
  else:
    text_config = transformers.MistralConfig(sliding_window=sliding_window, rope_theta=1e6, **text_kwargs)
  vision_config = transformers.CLIPVisionConfig(hidden_size=32, intermediate_size=52, num_hidden_layers=3,
                                                num_attention_heads=4, image_size=28, patch_size=7,
                                                projection_dim=16, hidden_act="quick_gelu")
  return transformers.LlavaNextConfig(vision_config=vision_config, text_config=text_config,
                                      image_token_index=IMAGE_TOKEN, image_grid_pinpoints=pinpoints,
                                      vision_feature_layer=feature_layer, tie_word_embeddings=tie)


def save_random(path, model_cls, config, seed=0, biases=False):
  """Save `model_cls(config)`, random under torch seed `seed`, to `path` with its 1-D norm weights
  (and, with `biases`, its 1-D biases) moved off their init by N(0, 0.1); returns the HF model
  (fp32, eval, eager attention)."""
  torch.manual_seed(seed)
  config._attn_implementation = "eager"
  model = model_cls(config).eval()
  with torch.no_grad():  # make norms (and biases) non-trivial
    for name, p in model.named_parameters():
      if ("norm" in name or (biases and name.endswith("bias"))) and p.ndim == 1:
        p.add_(0.1 * torch.randn_like(p))
  model.save_pretrained(path)
  return model


def build_llava_next(path, seed=0, **kwargs):
  """Save a random tiny LLaVA-NeXT to `path`; returns the HF model (fp32, eval, eager attention)."""
  return save_random(path, transformers.LlavaNextForConditionalGeneration, llava_next_config(**kwargs), seed)


def image_processor(pinpoints=PINPOINTS_WIDE):
  return transformers.LlavaNextImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28},
                                                 image_grid_pinpoints=pinpoints)


def random_images(sizes_hw, seed=0):
  from PIL import Image
  rng = np.random.default_rng(seed)
  return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes_hw]


def llava_next_batch(config, sizes_hw, text_lens, pad_side="right", seed=0, pinpoints=PINPOINTS_WIDE):
  """One image per row: [BOS] <image>*n [text tokens]; padded to a common length. Returns numpy dict."""
  from mmneuron_jax.models import anyres
  proc = image_processor(pinpoints)
  pix = proc(random_images(sizes_hw, seed), return_tensors="np")
  rng = np.random.default_rng(seed + 1)
  side = config.vision_config.image_size // config.vision_config.patch_size
  rows = []
  for size, n_text in zip(pix["image_sizes"], text_lens):
    n_img = len(anyres.image_feature_order(size, pinpoints, config.vision_config.image_size, side, 0, -1))
    rows.append([1] + [IMAGE_TOKEN] * n_img + list(rng.integers(3, 299, n_text)))
  from mmneuron_jax.data.inputs.batching import pad_rows
  ids, mask = pad_rows(rows, 0, pad_side)
  return {"input_ids": ids, "attention_mask": mask, "pixel_values": pix["pixel_values"].astype(np.float32),
          "image_sizes": pix["image_sizes"]}
