"""A tiny Qwen2.5-VL checkpoint in HF format, built deterministically with numpy (no torch, no
download): config.json (transformers-v5 layout), model.safetensors (hub weight names), the
tokenizer and image processor of the Qwen2-VL demo (`demo_qwen2_vl`: same special tokens, same
small ids). Loads through `load_hf` like a real one.

The ViT has window attention (56-px windows: 2x2 merged tokens, so the demo's images up to 84x84
get partial windows) with its last block on full attention, a SwiGLU MLP and RMSNorms.
"""
import functools

from mmneuron_jax.data.synthetic import demo_checkpoint as ckpt
from mmneuron_jax.data.synthetic.demo_qwen2_vl import (NORM_WEIGHTS, SPECIAL, decoder_shapes, vit_shapes, vl_config,
                                                       word_vocab, write_image_processor, write_tokenizer)


def demo_config(vocab_size: int, layers: int = 3, hidden: int = 64, intermediate: int = 128, vision_depth: int = 2,
                tie: bool = False) -> dict:
  """config.json of the tiny model (v5 layout: `text_config` with `rope_parameters`)."""
  vision = {"model_type": "qwen2_5_vl_vision", "depth": vision_depth, "hidden_size": 32, "intermediate_size": 48,
            "num_heads": 4, "out_hidden_size": hidden, "patch_size": 14, "spatial_merge_size": 2,
            "temporal_patch_size": 2, "in_channels": 3, "hidden_act": "silu", "window_size": 56,
            "fullatt_block_indexes": [vision_depth - 1], "tokens_per_second": 2}
  return vl_config("qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration", vision, vocab_size, layers, hidden,
                   intermediate, tie)


def hf_state_shapes(config: dict) -> dict:
  """HF tensor name -> shape (hub layout: 'model.*', 'visual.*', 'lm_head.weight')."""
  v = config["vision_config"]
  e, f = v["hidden_size"], v["intermediate_size"]
  mlp = {"gate_proj": (f, e), "up_proj": (f, e), "down_proj": (e, f)}
  return {**decoder_shapes(config), **vit_shapes(v, e, v["out_hidden_size"], mlp, norm_params=("weight",))}


def random_state(config: dict, seed: int = 0, gain: float = 2.0) -> dict:
  """Deterministic random weights: gain * N(0, 1/fan_in) matrices (gain > 1 so activations vary),
  norms near 1, small biases."""
  return ckpt.random_state(hf_state_shapes(config), seed, norm=NORM_WEIGHTS, gain=gain)


def build_demo_checkpoint(path: str, texts, seed: int = 0, edit_state=None, **config_kwargs) -> str:
  """Write the tiny Qwen2.5-VL checkpoint for the vocabulary of `texts` to `path`.

  `edit_state(state, config, vocab)` may plant weights before saving (vocab: token -> id);
  config_kwargs go to `demo_config` (layers, hidden, intermediate, vision_depth, tie). Returns `path`."""
  config = functools.partial(demo_config, **config_kwargs)
  return ckpt.build_checkpoint(path, texts, seed, edit_state, specials=SPECIAL, word_vocab=word_vocab,
                               write_tokenizer=write_tokenizer, demo_config=config, random_state=random_state,
                               write_processor=write_image_processor)
