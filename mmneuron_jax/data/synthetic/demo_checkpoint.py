"""What the tiny demo checkpoint writers (data/synthetic/demo_<family>.py) share: a word-level vocabulary and
fast tokenizer, deterministic random weights by name rule, HF decoder-layer tensor names, and
writing model.safetensors + config.json. Everything is numpy and `tokenizers`; no torch, no download.
"""
import json
import os
import re

import numpy as np

WORD = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")
BASE_WORDS = "0123456789abcdefghijklmnopqrstuvwxyz"


def word_vocab(texts, specials=(), always=()) -> list[str]:
  """Sorted unique lower-case words / punctuation of `texts` (each `specials` token blanked out
  first), plus digits, letters and `always`."""
  words = set(BASE_WORDS) | set(always)
  for text in texts:
    for tok in specials:
      text = text.replace(tok, " ")
    words.update(WORD.findall(text.lower()))
  return sorted(words)


def padded_vocab_size(n: int, multiple: int = 8) -> int:
  """`n` rounded up to a multiple of `multiple` (embedding rows)."""
  return n + (-n) % multiple


def write_json(path: str, obj):
  """`obj` as indented JSON (indent 1, the layout every demo file uses)."""
  with open(path, "w") as f:
    json.dump(obj, f, indent=1)


def write_word_tokenizer(path: str, tokens: list[str], special: list[str], tokenizer_config: dict,
                         unk: str = "<unk>", normalizer=None, pre_tokenizer=None, post_processor=None) -> dict:
  """A word-level fast tokenizer in `path` (tokenizer.json + tokenizer_config.json).

  tokens: the whole vocabulary in id order; special: the tokens registered as special;
  normalizer / pre_tokenizer default to lower-casing / whitespace splitting. Returns token -> id."""
  from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
  os.makedirs(path, exist_ok=True)
  vocab = {tok: i for i, tok in enumerate(tokens)}
  tok = Tokenizer(models.WordLevel(vocab, unk_token=unk))
  tok.normalizer = normalizers.Lowercase() if normalizer is None else normalizer
  tok.pre_tokenizer = pre_tokenizers.Whitespace() if pre_tokenizer is None else pre_tokenizer
  tok.add_special_tokens(special)
  if post_processor is not None:
    tok.post_processor = post_processor
  tok.decoder = decoders.WordPiece(prefix="##")
  tok.save(os.path.join(path, "tokenizer.json"))
  write_json(os.path.join(path, "tokenizer_config.json"),
             {"tokenizer_class": "PreTrainedTokenizerFast", **tokenizer_config})
  return vocab


def write_qwen_tokenizer(path: str, tokens: list[str], special: list[str]) -> int:
  """`write_word_tokenizer` with a Qwen2 chat demo's settings (eos <|im_end|>, pad <|endoftext|>,
  unk <unk>, right padding); returns the vocab size."""
  return len(write_word_tokenizer(
      path, tokens, special,
      {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "unk_token": "<unk>", "model_max_length": 2048,
       "padding_side": "right"}))


def build_checkpoint(path: str, texts, seed: int, edit_state, *, specials: list[str], word_vocab, write_tokenizer,
                     demo_config, random_state, write_processor) -> str:
  """A demo writer's `build_demo_checkpoint` from its parts: the vocabulary of `texts`
  (`word_vocab(texts)` after `specials`) -> `write_tokenizer(path, words)` -> `demo_config(padded
  vocab size)` -> `random_state(config, seed)`, edited in place by `edit_state(state, config, vocab)`
  when given (vocab: token -> id) -> model.safetensors + config.json, then `write_processor(path)`.
  Returns `path`."""
  os.makedirs(path, exist_ok=True)
  words = word_vocab(texts)
  config = demo_config(padded_vocab_size(write_tokenizer(path, words)))
  state = random_state(config, seed)
  if edit_state is not None:
    edit_state(state, config, {tok: i for i, tok in enumerate(specials + words)})
  save_checkpoint(path, state, config)
  write_processor(path)
  return path


def random_state(shapes: dict, seed: int, norm: str, gain: float = 1.0, rules=()) -> dict:
  """Deterministic random weights, drawn in sorted-name order from one numpy generator.

  shapes: HF name -> shape; the first matching `rules` entry `(regex, fn(rng, shape))` wins, then
  names matching `norm` get 1 + N(0, 0.1), other vectors N(0, 0.02), matrices gain * N(0, 1/fan_in)
  (fan_in = product of all but the first axis). Returns name -> float32 array."""
  rng = np.random.default_rng(seed)
  norm = re.compile(norm)
  state = {}
  for name, shape in sorted(shapes.items()):
    rule = next((fn for pattern, fn in rules if re.search(pattern, name)), None)
    if rule is not None:
      arr = rule(rng, shape)
    elif norm.search(name):
      arr = 1.0 + 0.1 * rng.standard_normal(shape)
    elif len(shape) == 1:
      arr = 0.02 * rng.standard_normal(shape)
    else:
      arr = gain * rng.standard_normal(shape) / np.sqrt(int(np.prod(shape[1:])))
    state[name] = arr.astype(np.float32)
  return state


def llama_text_config(vocab_size: int, layers: int, kv_heads: int, rms_norm_eps: float) -> dict:
  """`text_config` of the tiny Vicuna-style (Llama) LLM: width 64, 4 heads, MLP 96, BOS 1, EOS 2, pad 3."""
  return {"model_type": "llama", "vocab_size": vocab_size, "hidden_size": 64, "intermediate_size": 96,
          "num_hidden_layers": layers, "num_attention_heads": 4, "num_key_value_heads": kv_heads,
          "max_position_embeddings": 1024, "rms_norm_eps": rms_norm_eps, "rope_theta": 10000.0,
          "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 3,
          "tie_word_embeddings": False}


def decoder_layer_shapes(prefix: str, text_config: dict, qkv_bias: bool = False) -> dict:
  """HF tensor name -> shape of every layer of a Llama / Qwen2 decoder (`{prefix}{i}.self_attn...`)."""
  t = text_config
  d, f = t["hidden_size"], t["intermediate_size"]
  kv = t["num_key_value_heads"] * (d // t["num_attention_heads"])
  s = {}
  for i in range(t["num_hidden_layers"]):
    p = f"{prefix}{i}."
    s.update({p + "self_attn.q_proj.weight": (d, d), p + "self_attn.k_proj.weight": (kv, d),
              p + "self_attn.v_proj.weight": (kv, d), p + "self_attn.o_proj.weight": (d, d),
              p + "mlp.gate_proj.weight": (f, d), p + "mlp.up_proj.weight": (f, d), p + "mlp.down_proj.weight": (d, f),
              p + "input_layernorm.weight": (d,), p + "post_attention_layernorm.weight": (d,)})
    if qkv_bias:
      s.update({p + "self_attn.q_proj.bias": (d,), p + "self_attn.k_proj.bias": (kv,),
                p + "self_attn.v_proj.bias": (kv,)})
  return s


def save_checkpoint(path: str, state: dict, config: dict):
  """model.safetensors (`{"format": "pt"}` metadata, as HF writes it) and config.json in `path`."""
  from safetensors.numpy import save_file
  save_file(state, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
  write_json(os.path.join(path, "config.json"), config)
