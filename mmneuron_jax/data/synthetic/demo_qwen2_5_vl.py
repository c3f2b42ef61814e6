"""A tiny Qwen2.5-VL checkpoint in HF format, built deterministically with numpy (no torch, no
download): config.json (transformers-v5 layout), model.safetensors (hub weight names), the
tokenizer and image processor of the Qwen2-VL demo (`demo_qwen2_vl`: same special tokens, same
small ids). Loads through `load_hf` like a real one.

The ViT has window attention (56-px windows: 2x2 merged tokens, so the demo's images up to 84x84
get partial windows) with its last block on full attention, a SwiGLU MLP and RMSNorms.
"""
import os

from mmneuron_jax.data.synthetic import demo_checkpoint as ckpt
from mmneuron_jax.data.synthetic.demo_qwen2_vl import IDS, SPECIAL, word_vocab, write_image_processor, write_tokenizer


def demo_config(vocab_size: int, layers: int = 3, hidden: int = 64, intermediate: int = 128, vision_depth: int = 2,
                tie: bool = False) -> dict:
  """config.json of the tiny model (v5 layout: `text_config` with `rope_parameters`)."""
  text = {"model_type": "qwen2_5_vl_text", "vocab_size": vocab_size, "hidden_size": hidden,
          "intermediate_size": intermediate, "num_hidden_layers": layers, "num_attention_heads": 4,
          "num_key_value_heads": 2, "hidden_act": "silu", "rms_norm_eps": 1e-6, "max_position_embeddings": 2048,
          "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
          "layer_types": ["full_attention"] * layers, "use_sliding_window": False, "sliding_window": None,
          "tie_word_embeddings": tie, "bos_token_id": IDS["<|endoftext|>"], "eos_token_id": IDS["<|im_end|>"],
          "pad_token_id": IDS["<|endoftext|>"], "attention_dropout": 0.0}
  vision = {"model_type": "qwen2_5_vl_vision", "depth": vision_depth, "hidden_size": 32, "intermediate_size": 48,
            "num_heads": 4, "out_hidden_size": hidden, "patch_size": 14, "spatial_merge_size": 2,
            "temporal_patch_size": 2, "in_channels": 3, "hidden_act": "silu", "window_size": 56,
            "fullatt_block_indexes": [vision_depth - 1], "tokens_per_second": 2}
  return {"architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
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
  e, f, ps, tp, m = v["hidden_size"], v["intermediate_size"], v["patch_size"], v["temporal_patch_size"], \
      v["spatial_merge_size"]
  s["visual.patch_embed.proj.weight"] = (e, v["in_channels"], tp, ps, ps)
  for i in range(v["depth"]):
    p = f"visual.blocks.{i}."
    s.update({p + "attn.qkv.weight": (3 * e, e), p + "attn.qkv.bias": (3 * e,), p + "attn.proj.weight": (e, e),
              p + "attn.proj.bias": (e,), p + "mlp.gate_proj.weight": (f, e), p + "mlp.gate_proj.bias": (f,),
              p + "mlp.up_proj.weight": (f, e), p + "mlp.up_proj.bias": (f,), p + "mlp.down_proj.weight": (e, f),
              p + "mlp.down_proj.bias": (e,), p + "norm1.weight": (e,), p + "norm2.weight": (e,)})
  merged = e * m * m
  s.update({"visual.merger.ln_q.weight": (e,), "visual.merger.mlp.0.weight": (merged, merged),
            "visual.merger.mlp.0.bias": (merged,), "visual.merger.mlp.2.weight": (v["out_hidden_size"], merged),
            "visual.merger.mlp.2.bias": (v["out_hidden_size"],)})
  return s


def random_state(config: dict, seed: int = 0, gain: float = 2.0) -> dict:
  """Deterministic random weights: gain * N(0, 1/fan_in) matrices (gain > 1 so activations vary),
  norms near 1, small biases."""
  return ckpt.random_state(hf_state_shapes(config), seed, norm=r"(norm\d?|layernorm|ln_q)\.weight$", gain=gain)


def build_demo_checkpoint(path: str, texts, seed: int = 0, edit_state=None, **config_kwargs) -> str:
  """Write the tiny Qwen2.5-VL checkpoint for the vocabulary of `texts` to `path`.

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
