"""A tiny Qwen2-VL checkpoint in HF format, built deterministically with numpy (no torch, no
download): config.json (transformers-v5 layout), model.safetensors (hub weight names),
tokenizer.json + tokenizer_config.json (word level, with Qwen2-VL's special tokens) and
preprocessor_config.json (the Qwen2-VL image processor). Loads through `load_hf` like a real one.

The Qwen2-VL special tokens keep their names but get small ids (`SPECIAL`, e.g. `<|image_pad|>`
= 6 instead of 151655), written consistently into config.json (`image_token_id`,
`video_token_id`, `vision_start_token_id`, `vision_end_token_id`, eos/pad ids); MINER reads
the ids from the tokenizer and config, so the remapping is invisible to the pipeline.
"""
import functools
import os

from mmneuron_jax.data.synthetic import demo_checkpoint as ckpt

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
           "<|image_pad|>", "<|video_pad|>", "<unk>"]
IDS = {tok: i for i, tok in enumerate(SPECIAL)}
SYSTEM = "You are a helpful assistant."
PIXELS = (56 * 56, 84 * 84)  # min / max pixels of the image processor
# Words of the chat template, always in the vocabulary.
TEMPLATE_WORDS = f"system user assistant {SYSTEM}"
NORM_WEIGHTS = r"(norm\d?|layernorm|ln_q)\.weight$"  # drawn near 1 by `random_state`


def demo_config(vocab_size: int, layers: int = 3, hidden: int = 64, intermediate: int = 128, vision_depth: int = 2,
                tie: bool = False) -> dict:
  """config.json of the tiny model (v5 layout: `text_config` with `rope_parameters`)."""
  vision = {"model_type": "qwen2_vl_vision", "depth": vision_depth, "embed_dim": 32, "hidden_size": hidden,
            "num_heads": 4, "mlp_ratio": 2, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
            "in_channels": 3, "hidden_act": "quick_gelu"}
  return vl_config("qwen2_vl", "Qwen2VLForConditionalGeneration", vision, vocab_size, layers, hidden, intermediate,
                   tie)


def vl_config(model_type: str, architecture: str, vision: dict, vocab_size: int, layers: int, hidden: int,
              intermediate: int, tie: bool) -> dict:
  """config.json of a tiny Qwen VL model around its `vision_config` (v5 layout: a `{model_type}_text`
  `text_config` with `rope_parameters`; this module's special-token ids)."""
  text = {"model_type": f"{model_type}_text", "vocab_size": vocab_size, "hidden_size": hidden,
          "intermediate_size": intermediate, "num_hidden_layers": layers, "num_attention_heads": 4,
          "num_key_value_heads": 2, "hidden_act": "silu", "rms_norm_eps": 1e-6, "max_position_embeddings": 2048,
          "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
          "layer_types": ["full_attention"] * layers, "use_sliding_window": False, "sliding_window": None,
          "tie_word_embeddings": tie, "bos_token_id": IDS["<|endoftext|>"], "eos_token_id": IDS["<|im_end|>"],
          "pad_token_id": IDS["<|endoftext|>"], "attention_dropout": 0.0}
  return {"architectures": [architecture], "model_type": model_type,
          "text_config": text, "vision_config": vision, "tie_word_embeddings": tie,
          "image_token_id": IDS["<|image_pad|>"], "video_token_id": IDS["<|video_pad|>"],
          "vision_start_token_id": IDS["<|vision_start|>"], "vision_end_token_id": IDS["<|vision_end|>"],
          "bos_token_id": IDS["<|endoftext|>"], "eos_token_id": IDS["<|im_end|>"]}


def hf_state_shapes(config: dict) -> dict:
  """HF tensor name -> shape (hub layout: 'model.*', 'visual.*', 'lm_head.weight')."""
  v = config["vision_config"]
  e = v["embed_dim"]
  vf = int(e * v["mlp_ratio"])
  return {**decoder_shapes(config),
          **vit_shapes(v, e, v["hidden_size"], {"fc1": (vf, e), "fc2": (e, vf)}, norm_params=("weight", "bias"))}


def decoder_shapes(config: dict) -> dict:
  """HF tensor name -> shape of a Qwen VL config's decoder ('model.*'; 'lm_head.weight' unless tied)."""
  t = config["text_config"]
  d, V = t["hidden_size"], t["vocab_size"]
  s = {"model.embed_tokens.weight": (V, d), "model.norm.weight": (d,),
       **ckpt.decoder_layer_shapes("model.layers.", t, qkv_bias=True)}
  if not config.get("tie_word_embeddings"):
    s["lm_head.weight"] = (V, d)
  return s


def vit_shapes(v: dict, width: int, out: int, mlp: dict, norm_params: tuple) -> dict:
  """HF tensor name -> shape of a Qwen ViT ('visual.*') of `width` channels: patch embed, fused-qkv
  blocks with the MLP `mlp` {name: weight shape} (all with biases), norms (norm1, norm2, merger.ln_q)
  with `norm_params`, and the PatchMerger MLP to `out` channels."""
  e, ps, tp, m = width, v["patch_size"], v["temporal_patch_size"], v["spatial_merge_size"]
  s = {"visual.patch_embed.proj.weight": (e, v["in_channels"], tp, ps, ps)}
  for i in range(v["depth"]):
    p = f"visual.blocks.{i}."
    s.update({p + "attn.qkv.weight": (3 * e, e), p + "attn.qkv.bias": (3 * e,), p + "attn.proj.weight": (e, e),
              p + "attn.proj.bias": (e,)})
    for name, shape in mlp.items():
      s[p + f"mlp.{name}.weight"], s[p + f"mlp.{name}.bias"] = shape, shape[:1]
    s.update({f"{p}{norm}.{param}": (e,) for norm in ("norm1", "norm2") for param in norm_params})
  merged = e * m * m
  s.update({f"visual.merger.ln_q.{param}": (e,) for param in norm_params})
  s.update({"visual.merger.mlp.0.weight": (merged, merged), "visual.merger.mlp.0.bias": (merged,),
            "visual.merger.mlp.2.weight": (out, merged), "visual.merger.mlp.2.bias": (out,)})
  return s


def random_state(config: dict, seed: int = 0, gain: float = 2.0) -> dict:
  """Deterministic random weights: gain * N(0, 1/fan_in) matrices (gain > 1 so activations vary),
  norms near 1, small biases."""
  return ckpt.random_state(hf_state_shapes(config), seed, norm=NORM_WEIGHTS, gain=gain)


def word_vocab(texts) -> list:
  """Sorted unique lower-case words / punctuation of `texts` and the template, plus digits and letters."""
  return ckpt.word_vocab(list(texts) + [TEMPLATE_WORDS], specials=SPECIAL)


def write_tokenizer(path: str, vocab_words: list) -> int:
  """A word-level fast tokenizer (lower-cased, no BOS, Qwen2-VL special tokens); returns the vocab size."""
  return ckpt.write_qwen_tokenizer(path, SPECIAL + vocab_words, SPECIAL)


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
  config = functools.partial(demo_config, **config_kwargs)
  return ckpt.build_checkpoint(path, texts, seed, edit_state, specials=SPECIAL, word_vocab=word_vocab,
                               write_tokenizer=write_tokenizer, demo_config=config, random_state=random_state,
                               write_processor=write_image_processor)
