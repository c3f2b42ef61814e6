"""Full-size HF configs of the studied checkpoints (config.json contents), for shape checks,
benchmarks and random-weight runs without downloading anything."""
import copy

_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
_CLIP_L336 = {"model_type": "clip_vision_model", "hidden_size": 1024, "intermediate_size": 4096,
              "num_hidden_layers": 24, "num_attention_heads": 16, "image_size": 336, "patch_size": 14,
              "projection_dim": 768, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}

PRESETS = {
    "llava-hf/llava-v1.6-vicuna-7b-hf": {
        "model_type": "llava_next", "image_token_index": 32000, "image_grid_pinpoints": _PINPOINTS,
        "projector_hidden_act": "gelu", "vision_feature_layer": -2, "vision_feature_select_strategy": "default",
        "tie_word_embeddings": False, "vision_config": _CLIP_L336,
        "text_config": {"model_type": "llama", "vocab_size": 32064, "hidden_size": 4096, "intermediate_size": 11008,
                        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
                        "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
                        "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu"},
    },
    "llava-hf/llava-v1.6-mistral-7b-hf": {
        "model_type": "llava_next", "image_token_index": 32000, "image_grid_pinpoints": _PINPOINTS,
        "projector_hidden_act": "gelu", "vision_feature_layer": -2, "vision_feature_select_strategy": "default",
        "tie_word_embeddings": False, "vision_config": _CLIP_L336,
        "text_config": {"model_type": "mistral", "vocab_size": 32064, "hidden_size": 4096,
                        "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
                        "num_key_value_heads": 8, "max_position_embeddings": 32768, "rms_norm_eps": 1e-5,
                        "rope_theta": 1000000.0, "sliding_window": None, "bos_token_id": 1, "eos_token_id": 2,
                        "hidden_act": "silu"},
    },
}

# Salesforce/instructblip-vicuna-7b as transformers >= 4.47 hosts it (image_token_index 32001 = "<image>",
# embeddings resized to 32064; [PAD] 32000). Vision (EVA ViT-g/14, 224 px) and Q-Former are HF's defaults.
PRESETS["Salesforce/instructblip-vicuna-7b"] = {
    "model_type": "instructblip", "num_query_tokens": 32, "image_token_index": 32001,
    "use_decoder_only_language_model": True, "tie_word_embeddings": False,
    "vision_config": {"model_type": "instructblip_vision_model", "hidden_size": 1408, "intermediate_size": 6144,
                      "num_hidden_layers": 39, "num_attention_heads": 16, "image_size": 224, "patch_size": 14,
                      "hidden_act": "gelu", "layer_norm_eps": 1e-6, "qkv_bias": True},
    "qformer_config": {"model_type": "instructblip_qformer", "vocab_size": 30523, "hidden_size": 768,
                       "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
                       "max_position_embeddings": 512, "cross_attention_frequency": 2, "encoder_hidden_size": 1408,
                       "hidden_act": "gelu", "layer_norm_eps": 1e-12, "pad_token_id": 0},
    "text_config": {"model_type": "llama", "vocab_size": 32064, "hidden_size": 4096, "intermediate_size": 11008,
                    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
                    "max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
                    "pad_token_id": 32000, "bos_token_id": 0, "eos_token_id": 1, "hidden_act": "silu",
                    "tie_word_embeddings": False},
}


def preset(name: str) -> dict:
  if name not in PRESETS:
    raise KeyError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
  return copy.deepcopy(PRESETS[name])
