"""A tiny LLaVA-NeXT checkpoint in HF format, built deterministically with numpy (no torch,
no download): config.json, model.safetensors (hub weight names), tokenizer.json and
preprocessor_config.json. It loads through the same `load_hf` path as a real checkpoint.
"""
import os

from mmneuron_jax.data.synthetic import demo_checkpoint as ckpt

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
      "text_config": ckpt.llama_text_config(vocab_size, text_layers, kv_heads=2, rms_norm_eps=1e-5),
      "vision_config": {"model_type": "clip_vision_model", "hidden_size": 48, "intermediate_size": 80,
                        "num_hidden_layers": vision_layers, "num_attention_heads": 4, "image_size": TILE,
                        "patch_size": PATCH, "projection_dim": 32, "hidden_act": "quick_gelu",
                        "layer_norm_eps": 1e-5},
  }


VISION_PREFIX = "vision_tower.vision_model."  # the vision tower's HF names (hub layout)


def llava_state_shapes(config: dict, qkv_bias: bool = False) -> dict:
  """HF tensor name -> shape of what the LLaVA demos share (hub layout): image_newline, the decoder
  (`qkv_bias`: q/k/v biases) and lm_head, the projector, and the vision tower's encoder layers (CLIP
  and SigLIP name them alike); the tower's embeddings and norms are the family's."""
  t, v = config["text_config"], config["vision_config"]
  d, vd, vf = t["hidden_size"], v["hidden_size"], v["intermediate_size"]
  s = {"image_newline": (d,), "language_model.lm_head.weight": (t["vocab_size"], d),
       "language_model.model.embed_tokens.weight": (t["vocab_size"], d), "language_model.model.norm.weight": (d,),
       "multi_modal_projector.linear_1.weight": (d, vd), "multi_modal_projector.linear_1.bias": (d,),
       "multi_modal_projector.linear_2.weight": (d, d), "multi_modal_projector.linear_2.bias": (d,),
       **ckpt.decoder_layer_shapes("language_model.model.layers.", t, qkv_bias=qkv_bias)}
  for i in range(v["num_hidden_layers"]):
    p = f"{VISION_PREFIX}encoder.layers.{i}."
    for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
      s[p + f"self_attn.{name}.weight"], s[p + f"self_attn.{name}.bias"] = (vd, vd), (vd,)
    s.update({p + "mlp.fc1.weight": (vf, vd), p + "mlp.fc1.bias": (vf,), p + "mlp.fc2.weight": (vd, vf),
              p + "mlp.fc2.bias": (vd,), p + "layer_norm1.weight": (vd,), p + "layer_norm1.bias": (vd,),
              p + "layer_norm2.weight": (vd,), p + "layer_norm2.bias": (vd,)})
  return s


def hf_state_shapes(config: dict) -> dict:
  """HF tensor name -> shape for a LLaVA-NeXT config (hub layout)."""
  v, vp = config["vision_config"], VISION_PREFIX
  vd = v["hidden_size"]
  n_pos = (v["image_size"] // v["patch_size"]) ** 2 + 1
  return {**llava_state_shapes(config),
          vp + "embeddings.class_embedding": (vd,),
          vp + "embeddings.patch_embedding.weight": (vd, 3, v["patch_size"], v["patch_size"]),
          vp + "embeddings.position_embedding.weight": (n_pos, vd),
          vp + "pre_layrnorm.weight": (vd,), vp + "pre_layrnorm.bias": (vd,),
          vp + "post_layernorm.weight": (vd,), vp + "post_layernorm.bias": (vd,)}


def random_state(config: dict, seed: int = 0) -> dict:
  """Deterministic random weights: N(0, 1/sqrt(fan_in)) matrices, norms near 1, small biases."""
  return ckpt.random_state(hf_state_shapes(config), seed, norm=r"(norm|layernorm|layrnorm|layer_norm\d)\.weight$")


def word_vocab(texts) -> list[str]:
  """Sorted unique lower-case words and punctuation of `texts`, plus digits, letters, '<' and '>'."""
  return ckpt.word_vocab(texts, always="<>")


def write_tokenizer(path: str, vocab_words: list[str]) -> int:
  """A word-level fast tokenizer (lower-cased, BOS prepended); returns the <image> token id."""
  from tokenizers import pre_tokenizers, processors
  vocab = ckpt.write_word_tokenizer(
      path, SPECIAL + vocab_words + [IMAGE_TOKEN], SPECIAL + [IMAGE_TOKEN],
      {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>", "model_max_length": 1024,
       "padding_side": "right"},
      pre_tokenizer=pre_tokenizers.Sequence([pre_tokenizers.Whitespace()]),
      post_processor=processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)]))
  return vocab[IMAGE_TOKEN]


def write_image_processor(path: str):
  ckpt.write_json(os.path.join(path, "preprocessor_config.json"), {
      "image_processor_type": "LlavaNextImageProcessor", "size": {"shortest_edge": TILE},
      "crop_size": {"height": TILE, "width": TILE}, "image_grid_pinpoints": PINPOINTS,
      "do_resize": True, "do_center_crop": True, "do_rescale": True, "rescale_factor": 1 / 255,
      "do_normalize": True, "image_mean": [0.48145466, 0.4578275, 0.40821073],
      "image_std": [0.26862954, 0.26130258, 0.27577711], "do_pad": True, "do_convert_rgb": True, "resample": 3})


def build_demo_checkpoint(path: str, texts, seed: int = 0, edit_state=None) -> str:
  """Write the tiny demo checkpoint for the vocabulary of `texts`; `edit_state(state, config,
  tokenizer_vocab)` may plant weights before saving. Returns `path`."""
  return write_llava_demo(path, texts, seed, edit_state, demo_config, random_state, write_image_processor)


def write_llava_demo(path: str, texts, seed, edit_state, make_config, make_state, write_processor,
                     media_tokens: int = 1) -> str:
  """`build_demo_checkpoint` of a LLaVA family from its pieces: this tokenizer (`write_tokenizer`),
  `make_config(vocab_size, image_token_id)` with embedding rows for the `media_tokens` ids from
  <image> on, `make_state(config, seed)`, `edit_state`, then `write_processor(path)`. Returns `path`."""
  os.makedirs(path, exist_ok=True)
  words = word_vocab(texts)
  image_id = write_tokenizer(path, words)
  config = make_config(ckpt.padded_vocab_size(image_id + media_tokens), image_id)
  state = make_state(config, seed)
  if edit_state is not None:
    vocab = {tok: i for i, tok in enumerate(SPECIAL + words)}
    edit_state(state, config, vocab)
  ckpt.save_checkpoint(path, state, config)
  write_processor(path)
  return path
