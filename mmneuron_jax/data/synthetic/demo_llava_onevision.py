"""A tiny LLaVA-OneVision checkpoint in HF format, built deterministically with numpy (no torch,
no download): config.json, model.safetensors (hub weight names), tokenizer.json and
preprocessor_config.json. It loads through the same `load_hf` path as a real checkpoint. Its
`vision_aspect_ratio` 'anyres_max_2' makes a 2x2 tile grid take the bilinear shrink.
"""
import os

from mmneuron_jax.data.synthetic import demo_checkpoint as ckpt
from mmneuron_jax.data.synthetic import demo_llava_next

SPECIAL = demo_llava_next.SPECIAL
TILE = 28
PATCH = 7
PINPOINTS = [[28, 28], [28, 56], [56, 28], [56, 56]]


def demo_config(vocab_size: int, image_token_id: int, text_layers=4, vision_layers=3) -> dict:
  text = dict(ckpt.llama_text_config(vocab_size, text_layers, kv_heads=2, rms_norm_eps=1e-6),
              model_type="qwen2", rope_theta=1e6)
  return {
      "architectures": ["LlavaOnevisionForConditionalGeneration"], "model_type": "llava_onevision",
      "image_token_index": image_token_id, "video_token_index": image_token_id + 1,
      "image_grid_pinpoints": PINPOINTS, "projector_hidden_act": "gelu", "vision_aspect_ratio": "anyres_max_2",
      "vision_feature_layer": -1, "vision_feature_select_strategy": "full", "tie_word_embeddings": False,
      "text_config": text,
      "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 48, "intermediate_size": 80,
                        "num_hidden_layers": vision_layers, "num_attention_heads": 4, "image_size": TILE,
                        "patch_size": PATCH, "vision_use_head": False},
  }


def hf_state_shapes(config: dict) -> dict:
  """HF tensor name -> shape for a LLaVA-OneVision config (hub layout)."""
  v, vp = config["vision_config"], demo_llava_next.VISION_PREFIX
  vd = v["hidden_size"]
  return {**demo_llava_next.llava_state_shapes(config, qkv_bias=True),
          vp + "embeddings.patch_embedding.weight": (vd, 3, v["patch_size"], v["patch_size"]),
          vp + "embeddings.patch_embedding.bias": (vd,),
          vp + "embeddings.position_embedding.weight": ((v["image_size"] // v["patch_size"]) ** 2, vd),
          vp + "post_layernorm.weight": (vd,), vp + "post_layernorm.bias": (vd,)}


def random_state(config: dict, seed: int = 0) -> dict:
  """Deterministic random weights: N(0, 1/sqrt(fan_in)) matrices, norms near 1, small biases."""
  return ckpt.random_state(hf_state_shapes(config), seed, norm=r"(norm|layernorm|layer_norm\d)\.weight$")


def write_image_processor(path: str):
  ckpt.write_json(os.path.join(path, "preprocessor_config.json"), {
      "image_processor_type": "LlavaOnevisionImageProcessor", "size": {"height": TILE, "width": TILE},
      "image_grid_pinpoints": PINPOINTS, "do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255,
      "do_normalize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "do_pad": True,
      "do_convert_rgb": True, "resample": 3})


def build_demo_checkpoint(path: str, texts, seed: int = 0, edit_state=None) -> str:
  """Write the tiny demo checkpoint for the vocabulary of `texts` (LLaVA-NeXT's tokenizer; the
  embedding also holds <video>, the id after <image>); `edit_state(state, config, tokenizer_vocab)`
  may plant weights before saving. Returns `path`."""
  return demo_llava_next.write_llava_demo(path, texts, seed, edit_state, demo_config, random_state,
                                          write_image_processor, media_tokens=2)
