"""A tiny LLaVA-NeXT checkpoint in HF format, built deterministically with numpy (no torch,
no download): config.json, model.safetensors (hub weight names), tokenizer.json and
preprocessor_config.json. It loads through the same `load_hf` path as a real checkpoint.
"""
import json
import os
import re

import numpy as np

SPECIAL = ["<unk>", "<s>", "</s>", "<pad>"]
IMAGE_TOKEN = "<image>"
TILE = 28
PATCH = 7
PINPOINTS = [[28, 56], [56, 28], [56, 56]]


def demo_config(vocab_size: int, image_token_id: int, text_layers=4, vision_layers=3) -> dict:
  return {
      "architectures": ["LlavaNextForConditionalGeneration"], "model_type": "llava_next",
      "image_token_index": image_token_id, "image_grid_pinpoints": PINPOINTS, "projector_hidden_act": "gelu",
      "vision_feature_layer": -2, "vision_feature_select_strategy": "default", "tie_word_embeddings": False,
      "multimodal_projector_bias": True, "image_seq_length": (TILE // PATCH) ** 2,
      "text_config": {"model_type": "llama", "vocab_size": vocab_size, "hidden_size": 64, "intermediate_size": 96,
                      "num_hidden_layers": text_layers, "num_attention_heads": 4, "num_key_value_heads": 2,
                      "max_position_embeddings": 1024, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
                      "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 3,
                      "tie_word_embeddings": False},
      "vision_config": {"model_type": "clip_vision_model", "hidden_size": 48, "intermediate_size": 80,
                        "num_hidden_layers": vision_layers, "num_attention_heads": 4, "image_size": TILE,
                        "patch_size": PATCH, "projection_dim": 32, "hidden_act": "quick_gelu",
                        "layer_norm_eps": 1e-5},
  }


def hf_state_shapes(config: dict) -> dict:
  """HF tensor name -> shape for a LLaVA-NeXT config (hub layout)."""
  t, v = config["text_config"], config["vision_config"]
  d, f, vd, vf = t["hidden_size"], t["intermediate_size"], v["hidden_size"], v["intermediate_size"]
  hd = d // t["num_attention_heads"]
  kv = t["num_key_value_heads"] * hd
  s = {"image_newline": (d,), "language_model.lm_head.weight": (t["vocab_size"], d),
       "language_model.model.embed_tokens.weight": (t["vocab_size"], d), "language_model.model.norm.weight": (d,),
       "multi_modal_projector.linear_1.weight": (d, vd), "multi_modal_projector.linear_1.bias": (d,),
       "multi_modal_projector.linear_2.weight": (d, d), "multi_modal_projector.linear_2.bias": (d,)}
  for i in range(t["num_hidden_layers"]):
    p = f"language_model.model.layers.{i}."
    s.update({p + "self_attn.q_proj.weight": (d, d), p + "self_attn.k_proj.weight": (kv, d),
              p + "self_attn.v_proj.weight": (kv, d), p + "self_attn.o_proj.weight": (d, d),
              p + "mlp.gate_proj.weight": (f, d), p + "mlp.up_proj.weight": (f, d), p + "mlp.down_proj.weight": (d, f),
              p + "input_layernorm.weight": (d,), p + "post_attention_layernorm.weight": (d,)})
  vp = "vision_tower.vision_model."
  n_pos = (v["image_size"] // v["patch_size"]) ** 2 + 1
  s.update({vp + "embeddings.class_embedding": (vd,),
            vp + "embeddings.patch_embedding.weight": (vd, 3, v["patch_size"], v["patch_size"]),
            vp + "embeddings.position_embedding.weight": (n_pos, vd),
            vp + "pre_layrnorm.weight": (vd,), vp + "pre_layrnorm.bias": (vd,),
            vp + "post_layernorm.weight": (vd,), vp + "post_layernorm.bias": (vd,)})
  for i in range(v["num_hidden_layers"]):
    p = f"{vp}encoder.layers.{i}."
    for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
      s[p + f"self_attn.{name}.weight"], s[p + f"self_attn.{name}.bias"] = (vd, vd), (vd,)
    s.update({p + "mlp.fc1.weight": (vf, vd), p + "mlp.fc1.bias": (vf,), p + "mlp.fc2.weight": (vd, vf),
              p + "mlp.fc2.bias": (vd,), p + "layer_norm1.weight": (vd,), p + "layer_norm1.bias": (vd,),
              p + "layer_norm2.weight": (vd,), p + "layer_norm2.bias": (vd,)})
  return s


def random_state(config: dict, seed: int = 0) -> dict:
  """Deterministic random weights: N(0, 1/sqrt(fan_in)) matrices, norms near 1, small biases."""
  rng = np.random.default_rng(seed)
  state = {}
  for name, shape in sorted(hf_state_shapes(config).items()):
    if re.search(r"(norm|layernorm|layrnorm|layer_norm\d)\.weight$", name):
      arr = 1.0 + 0.1 * rng.standard_normal(shape)
    elif len(shape) == 1:
      arr = 0.02 * rng.standard_normal(shape)
    else:
      fan_in = int(np.prod(shape[1:]))
      arr = rng.standard_normal(shape) / np.sqrt(fan_in)
    state[name] = arr.astype(np.float32)
  return state


def word_vocab(texts) -> list[str]:
  """Sorted unique lower-case words and punctuation of `texts`, plus digits and letters."""
  words = set("0123456789abcdefghijklmnopqrstuvwxyz")
  for text in texts:
    words.update(re.findall(r"[a-z0-9]+|[^\sa-z0-9]", text.lower()))
  words.discard(IMAGE_TOKEN)
  return sorted(words - {"<", ">"} | {"<", ">"})


def write_tokenizer(path: str, vocab_words: list[str]) -> int:
  """A word-level fast tokenizer (lower-cased, BOS prepended); returns the <image> token id."""
  from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
  vocab = {tok: i for i, tok in enumerate(SPECIAL + vocab_words)}
  image_id = len(vocab)
  vocab[IMAGE_TOKEN] = image_id
  tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
  tok.normalizer = normalizers.Lowercase()
  tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
  tok.add_special_tokens(SPECIAL + [IMAGE_TOKEN])
  tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
  tok.decoder = decoders.WordPiece(prefix="##")
  tok.save(os.path.join(path, "tokenizer.json"))
  with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
    json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
               "unk_token": "<unk>", "pad_token": "<pad>", "model_max_length": 1024, "padding_side": "right"}, f,
              indent=1)
  return image_id


def write_image_processor(path: str):
  with open(os.path.join(path, "preprocessor_config.json"), "w") as f:
    json.dump({"image_processor_type": "LlavaNextImageProcessor", "size": {"shortest_edge": TILE},
               "crop_size": {"height": TILE, "width": TILE}, "image_grid_pinpoints": PINPOINTS,
               "do_resize": True, "do_center_crop": True, "do_rescale": True, "rescale_factor": 1 / 255,
               "do_normalize": True, "image_mean": [0.48145466, 0.4578275, 0.40821073],
               "image_std": [0.26862954, 0.26130258, 0.27577711], "do_pad": True, "do_convert_rgb": True,
               "resample": 3}, f, indent=1)


def build_demo_checkpoint(path: str, texts, seed: int = 0, edit_state=None) -> str:
  """Write the tiny demo checkpoint for the vocabulary of `texts`; `edit_state(state, config,
  tokenizer_vocab)` may plant weights before saving. Returns `path`."""
  from safetensors.numpy import save_file
  os.makedirs(path, exist_ok=True)
  words = word_vocab(texts)
  image_id = write_tokenizer(path, words)
  vocab_size = image_id + 1 + (-(image_id + 1)) % 8
  config = demo_config(vocab_size, image_id)
  state = random_state(config, seed)
  if edit_state is not None:
    vocab = {tok: i for i, tok in enumerate(SPECIAL + words)}
    edit_state(state, config, vocab)
  save_file(state, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(config, f, indent=1)
  write_image_processor(path)
  return path
