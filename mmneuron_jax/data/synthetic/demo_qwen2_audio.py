"""A tiny Qwen2-Audio checkpoint in HF format, built deterministically with numpy (no torch, no
download): config.json, model.safetensors (hub weight names: 'language_model.*',
'audio_tower.*', 'multi_modal_projector.*'), tokenizer.json + tokenizer_config.json (word
level, with Qwen2-Audio's special tokens) and preprocessor_config.json (a WhisperFeatureExtractor
with 32 mel bins and 2 s chunks, so the encoder sees 200 mel frames = 100 positions and an
audio gives at most 50 tokens). Loads through `load_hf` (and HF) like a real one.

The special tokens keep their names but get small ids in Qwen2's order (`SPECIAL`:
<|im_start|> 1, <|im_end|> 2, <|AUDIO|> 3, <|audio_bos|> 4, <|audio_eos|> 5, instead of
151644..151648), written consistently into config.json (`audio_token_index`, eos/pad ids), so
`Qwen2AudioConfig.modality_token_ids` and the tokenizer agree on them.
"""
import functools
import os

import numpy as np

from mmneuron_jax.data.synthetic import demo_checkpoint as ckpt

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>", "<unk>"]
IDS = {tok: i for i, tok in enumerate(SPECIAL)}
SYSTEM = "You are a helpful assistant."
TEMPLATE_WORDS = f"system user assistant audio {SYSTEM}"  # always in the vocabulary
MEL_BINS, CHUNK_SECONDS, HOP = 32, 2, 160  # 16 kHz: 2 s -> 200 mel frames -> 100 encoder positions


def demo_config(vocab_size: int, layers: int = 3, hidden: int = 64, intermediate: int = 128, audio_layers: int = 2,
                audio_width: int = 48, audio_ffn: int = 96) -> dict:
  """config.json of the tiny model (HF layout: full `text_config` (qwen2) and `audio_config`)."""
  text = {"model_type": "qwen2", "vocab_size": vocab_size, "hidden_size": hidden, "intermediate_size": intermediate,
          "num_hidden_layers": layers, "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_act": "silu",
          "rms_norm_eps": 1e-6, "max_position_embeddings": 2048, "rope_theta": 10000.0, "use_sliding_window": False,
          "sliding_window": None, "layer_types": ["full_attention"] * layers, "tie_word_embeddings": False,
          "bos_token_id": IDS["<|endoftext|>"], "eos_token_id": IDS["<|im_end|>"],
          "pad_token_id": IDS["<|endoftext|>"], "attention_dropout": 0.0}
  audio = {"model_type": "qwen2_audio_encoder", "num_mel_bins": MEL_BINS, "encoder_layers": audio_layers,
           "encoder_attention_heads": 4, "encoder_ffn_dim": audio_ffn, "d_model": audio_width,
           "max_source_positions": CHUNK_SECONDS * 16000 // HOP // 2, "activation_function": "gelu",
           "scale_embedding": False}
  return {"architectures": ["Qwen2AudioForConditionalGeneration"], "model_type": "qwen2_audio",
          "text_config": text, "audio_config": audio, "audio_token_index": IDS["<|AUDIO|>"]}


def hf_state_shapes(config: dict) -> dict:
  """HF tensor name -> shape (hub layout)."""
  t, a = config["text_config"], config["audio_config"]
  d, V = t["hidden_size"], t["vocab_size"]
  s = {"language_model.model.embed_tokens.weight": (V, d), "language_model.model.norm.weight": (d,),
       "language_model.lm_head.weight": (V, d),
       **ckpt.decoder_layer_shapes("language_model.model.layers.", t, qkv_bias=True)}
  e, af, m = a["d_model"], a["encoder_ffn_dim"], a["num_mel_bins"]
  s.update({"audio_tower.conv1.weight": (e, m, 3), "audio_tower.conv1.bias": (e,),
            "audio_tower.conv2.weight": (e, e, 3), "audio_tower.conv2.bias": (e,),
            "audio_tower.embed_positions.weight": (a["max_source_positions"], e),
            "audio_tower.layer_norm.weight": (e,), "audio_tower.layer_norm.bias": (e,),
            "multi_modal_projector.linear.weight": (d, e), "multi_modal_projector.linear.bias": (d,)})
  for i in range(a["encoder_layers"]):
    p = f"audio_tower.layers.{i}."
    for name in ("q_proj", "v_proj", "out_proj"):
      s[p + f"self_attn.{name}.weight"], s[p + f"self_attn.{name}.bias"] = (e, e), (e,)
    s.update({p + "self_attn.k_proj.weight": (e, e), p + "fc1.weight": (af, e), p + "fc1.bias": (af,),
              p + "fc2.weight": (e, af), p + "fc2.bias": (e,), p + "self_attn_layer_norm.weight": (e,),
              p + "self_attn_layer_norm.bias": (e,), p + "final_layer_norm.weight": (e,),
              p + "final_layer_norm.bias": (e,)})
  return s


def sinusoids(length: int, channels: int) -> np.ndarray:
  """Whisper's position table (what HF initialises `embed_positions` with): float32[length, channels]."""
  inc = np.log(10000.0) / (channels // 2 - 1)
  inv = np.exp(-inc * np.arange(channels // 2))
  t = np.arange(length)[:, None] * inv[None, :]
  return np.concatenate([np.sin(t), np.cos(t)], axis=1).astype(np.float32)


def random_state(config: dict, seed: int = 0, gain: float = 2.0) -> dict:
  """Deterministic random weights: gain * N(0, 1/fan_in) matrices (gain > 1 so activations vary),
  norms near 1, small biases, Whisper's sinusoidal positions."""
  rules = [(r"embed_positions\.weight$", lambda rng, shape: sinusoids(*shape))]
  return ckpt.random_state(hf_state_shapes(config), seed, norm=r"(norm|layernorm|layer_norm)\.weight$", gain=gain,
                           rules=rules)


def word_vocab(texts) -> list:
  """Sorted unique lower-case words / punctuation of `texts` and the template, plus digits and letters."""
  return ckpt.word_vocab(list(texts) + [TEMPLATE_WORDS], specials=SPECIAL)


def write_tokenizer(path: str, vocab_words: list) -> int:
  """A word-level fast tokenizer (lower-cased, no BOS, Qwen2-Audio special tokens); returns the vocab size."""
  return ckpt.write_qwen_tokenizer(path, SPECIAL + vocab_words, SPECIAL)


def write_feature_extractor(path: str):
  """preprocessor_config.json of HF's WhisperFeatureExtractor (`MEL_BINS` bins, `CHUNK_SECONDS` s chunks)."""
  ckpt.write_json(os.path.join(path, "preprocessor_config.json"), {
      "feature_extractor_type": "WhisperFeatureExtractor", "processor_class": "Qwen2AudioProcessor",
      "feature_size": MEL_BINS, "sampling_rate": 16000, "hop_length": HOP, "chunk_length": CHUNK_SECONDS,
      "n_fft": 400, "padding_side": "right", "padding_value": 0.0, "return_attention_mask": True, "dither": 0.0})


def build_demo_checkpoint(path: str, texts, seed: int = 0, edit_state=None, **config_kwargs) -> str:
  """Write the tiny Qwen2-Audio checkpoint for the vocabulary of `texts` to `path`.

  `edit_state(state, config, vocab)` may plant weights before saving (vocab: token -> id);
  config_kwargs go to `demo_config` (layers, hidden, intermediate, audio_layers, audio_width,
  audio_ffn). Returns `path`."""
  config = functools.partial(demo_config, **config_kwargs)
  return ckpt.build_checkpoint(path, texts, seed, edit_state, specials=SPECIAL, word_vocab=word_vocab,
                               write_tokenizer=write_tokenizer, demo_config=config, random_state=random_state,
                               write_processor=write_feature_extractor)
