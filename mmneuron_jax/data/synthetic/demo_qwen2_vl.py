"""A tiny Qwen2-VL checkpoint in HF format, built deterministically with numpy (no torch, no
download): config.json (transformers-v5 layout), model.safetensors (hub weight names),
tokenizer.json + tokenizer_config.json (word level, with Qwen2-VL's special tokens) and
preprocessor_config.json (the Qwen2-VL image processor). Loads through `load_hf` like a real one.

The Qwen2-VL special tokens keep their names but get small ids (`SPECIAL`, e.g. `<|image_pad|>`
= 6 instead of 151655), written consistently into config.json (`image_token_id`,
`video_token_id`, `vision_start_token_id`, `vision_end_token_id`, eos/pad ids); MINER reads
the ids from the tokenizer and config, so the remapping is invisible to the pipeline.
"""
import os

from mmneuron_jax.data.synthetic import demo_checkpoint as ckpt

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
           "<|image_pad|>", "<|video_pad|>", "<unk>"]
IDS = {tok: i for i, tok in enumerate(SPECIAL)}
SYSTEM = "You are a helpful assistant."
PIXELS = (56 * 56, 84 * 84)  # min / max pixels of the image processor
# Words of the chat template, always in the vocabulary.
TEMPLATE_WORDS = f"system user assistant {SYSTEM}"


def demo_config(vocab_size: int, layers: int = 3, hidden: int = 64, intermediate: int = 128, vision_depth: int = 2,
                tie: bool = False) -> dict:
  """config.json of the tiny model (v5 layout: `text_config` with `rope_parameters`)."""
  text = {"model_type": "qwen2_vl_text", "vocab_size": vocab_size, "hidden_size": hidden,
          "intermediate_size": intermediate, "num_hidden_layers": layers, "num_attention_heads": 4,
          "num_key_value_heads": 2, "hidden_act": "silu", "rms_norm_eps": 1e-6, "max_position_embeddings": 2048,
          "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
          "layer_types": ["full_attention"] * layers, "use_sliding_window": False, "sliding_window": None,
          "tie_word_embeddings": tie, "bos_token_id": IDS["<|endoftext|>"], "eos_token_id": IDS["<|im_end|>"],
          "pad_token_id": IDS["<|endoftext|>"], "attention_dropout": 0.0}
  vision = {"model_type": "qwen2_vl_vision", "depth": vision_depth, "embed_dim": 32, "hidden_size": hidden,
            "num_heads": 4, "mlp_ratio": 2, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
            "in_channels": 3, "hidden_act": "quick_gelu"}
  return {"architectures": ["Qwen2VLForConditionalGeneration"], "model_type": "qwen2_vl",
          "text_config": text, "vision_config": vision, "tie_word_embeddings": tie,
          "image_token_id": IDS["<|image_pad|>"], "video_token_id": IDS["<|video_pad|>"],
          "vision_start_token_id": IDS["<|vision_start|>"], "vision_end_token_id": IDS["<|vision_end|>"],
          "bos_token_id": IDS["<|endoftext|>"], "eos_token_id": IDS["<|im_end|>"]}


def hf_state_shapes(config: dict) -> dict:
  """HF tensor name -> shape (hub layout: 'model.*', 'visual.*', 'lm_head.weight')."""
  t, v = config["text_config"], config["vision_config"]
  d, V = t["hidden_size"], t["vocab_size"]
  s = {"model.embed_tokens.weight": (V, d), "model.norm.weight": (d,),
       **ckpt.decoder_layer_shapes("model.layers.", t, qkv_bias=True)}
  if not config.get("tie_word_embeddings"):
    s["lm_head.weight"] = (V, d)
  e, ps, tp, m = v["embed_dim"], v["patch_size"], v["temporal_patch_size"], v["spatial_merge_size"]
  vf = int(e * v["mlp_ratio"])
  s["visual.patch_embed.proj.weight"] = (e, v["in_channels"], tp, ps, ps)
  for i in range(v["depth"]):
    p = f"visual.blocks.{i}."
    s.update({p + "attn.qkv.weight": (3 * e, e), p + "attn.qkv.bias": (3 * e,), p + "attn.proj.weight": (e, e),
              p + "attn.proj.bias": (e,), p + "mlp.fc1.weight": (vf, e), p + "mlp.fc1.bias": (vf,),
              p + "mlp.fc2.weight": (e, vf), p + "mlp.fc2.bias": (e,), p + "norm1.weight": (e,), p + "norm1.bias": (e,),
              p + "norm2.weight": (e,), p + "norm2.bias": (e,)})
  merged = e * m * m
  s.update({"visual.merger.ln_q.weight": (e,), "visual.merger.ln_q.bias": (e,),
            "visual.merger.mlp.0.weight": (merged, merged), "visual.merger.mlp.0.bias": (merged,),
            "visual.merger.mlp.2.weight": (v["hidden_size"], merged), "visual.merger.mlp.2.bias": (v["hidden_size"],)})
  return s


def random_state(config: dict, seed: int = 0, gain: float = 2.0) -> dict:
  """Deterministic random weights: gain * N(0, 1/fan_in) matrices (gain > 1 so activations vary),
  norms near 1, small biases."""
  return ckpt.random_state(hf_state_shapes(config), seed, norm=r"(norm\d?|layernorm|ln_q)\.weight$", gain=gain)


def word_vocab(texts) -> list:
  """Sorted unique lower-case words / punctuation of `texts` and the template, plus digits and letters."""
  return ckpt.word_vocab(list(texts) + [TEMPLATE_WORDS], specials=SPECIAL)


def write_tokenizer(path: str, vocab_words: list) -> int:
  """A word-level fast tokenizer (lower-cased, no BOS, Qwen2-VL special tokens); returns the vocab size."""
  return len(ckpt.write_word_tokenizer(
      path, SPECIAL + vocab_words, SPECIAL,
      {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "unk_token": "<unk>", "model_max_length": 2048,
       "padding_side": "right"}))


def write_image_processor(path: str):
  lo, hi = PIXELS
  ckpt.write_json(os.path.join(path, "preprocessor_config.json"), {
      "image_processor_type": "Qwen2VLImageProcessor", "size": {"shortest_edge": lo, "longest_edge": hi},
      "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2, "do_resize": True, "do_rescale": True,
      "rescale_factor": 1 / 255, "do_normalize": True, "do_convert_rgb": True, "resample": 3,
      "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]})


def build_demo_checkpoint(path: str, texts, seed: int = 0, edit_state=None, **config_kwargs) -> str:
  """Write the tiny Qwen2-VL checkpoint for the vocabulary of `texts` to `path`.

  `edit_state(state, config, vocab)` may plant weights before saving (vocab: token -> id);
  config_kwargs go to `demo_config` (layers, hidden, intermediate, vision_depth, tie). Returns `path`."""
  os.makedirs(path, exist_ok=True)
  words = word_vocab(texts)
  config = demo_config(ckpt.padded_vocab_size(write_tokenizer(path, words)), **config_kwargs)
  state = random_state(config, seed)
  if edit_state is not None:
    edit_state(state, config, {tok: i for i, tok in enumerate(SPECIAL + words)})
  ckpt.save_checkpoint(path, state, config)
  write_image_processor(path)
  return path
