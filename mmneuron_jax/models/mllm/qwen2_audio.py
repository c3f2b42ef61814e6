"""Qwen2-Audio: Whisper-style audio encoder -> linear projector -> audio features spliced over
the expanded `<|AUDIO|>` span of a Qwen2 decoder (1-D RoPE, q/k/v biases).

Probe modules: `llm` (decoder MLPs, neuron = silu(gate_proj(x))), `audio` (encoder MLPs,
neuron = gelu(fc1(x)); token layout `[N, P]`, audio x encoder frame).

The splice is computed on device from `input_ids` and `feature_attention_mask`, as HF's
non-legacy path: the k-th `<|AUDIO|>` token of the batch (row-major) takes the k-th valid
feature, audios in order, each contributing its first (((f - 1) // 2 + 1) - 2) // 2 + 1
features (f = its valid mel frames). HF never ties `lm_head` to the embedding here.
"""
import dataclasses

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from mmneuron_jax.convert import hf_config
from mmneuron_jax.convert.checks import reject_unsupported
from mmneuron_jax.convert.mapping import Rule
from mmneuron_jax.convert.transforms import transpose
from mmneuron_jax.models import llama, whisper_audio
from mmneuron_jax.models.llama import DecoderConfig
from mmneuron_jax.models.whisper_audio import AudioEncoder, AudioEncoderConfig, encoder_lengths
from mmneuron_jax.nn.layers import Dense
from mmneuron_jax.nn.policy import Policy

HF_FIELDS = ("model_type", "audio_token_index", "audio_token_id")
HF_IGNORED = ("vocab_size",)  # a legacy top-level copy (the text config's is read)

# MINER stage-1 id sets of the real Qwen2-Audio tokenizer (<|im_start|>, <|im_end|>, <|audio_bos|>,
# <|audio_eos|>; <|AUDIO|>): `analysis.miner.token_modality_masks(ids, TOKEN_IDS)`; a checkpoint's
# own are `Qwen2AudioConfig.modality_token_ids`.
TOKEN_IDS = {"special_ids": (151644, 151645, 151647, 151648), "image_ids": (), "video_ids": (), "audio_ids": (151646,)}


@dataclasses.dataclass(frozen=True)
class Qwen2AudioConfig:
  text: DecoderConfig
  audio: AudioEncoderConfig
  audio_token_id: int = 151646

  @classmethod
  def from_hf(cls, c: dict, where: str = "config.json") -> "Qwen2AudioConfig":
    """From a HF Qwen2-Audio config (hub layout with partial sub-configs, or transformers v5): read
    as HF reads it, with HF's class defaults filled in; unknown non-default fields raise."""
    c, defaults = hf_config.fill(c, where)
    hf_config.check_fields(c, defaults, HF_FIELDS, where, HF_IGNORED)
    text, text_defaults = hf_config.sub_config(c, defaults, "text_config")
    heads = text["num_attention_heads"]
    reject_unsupported(where, {
        "text_config.model_type": (text["model_type"], {"qwen2"}),
        "text_config.head_dim": (text.get("head_dim"), {None, text["hidden_size"] // heads}),
    })
    text = dict(text, tie_word_embeddings=False)  # Qwen2AudioForConditionalGeneration keeps its own lm_head
    decoder = DecoderConfig.from_hf(text, f"{where}: text_config", defaults=text_defaults)
    audio_c, audio_defaults = hf_config.sub_config(c, defaults, "audio_config")
    audio = AudioEncoderConfig.from_hf(audio_c, f"{where}: audio_config", defaults=audio_defaults)
    audio_id = c.get("audio_token_index", c.get("audio_token_id"))
    if not 0 <= audio_id < decoder.vocab_size:
      raise ValueError(f"{where}: audio_token_index={audio_id} is outside the vocabulary ({decoder.vocab_size})")
    return cls(text=decoder, audio=audio, audio_token_id=int(audio_id))

  @property
  def probe_modules(self) -> dict[str, tuple[int, int]]:
    return {"llm": (self.text.num_layers, self.text.intermediate_size),
            "audio": (self.audio.num_layers, self.audio.ffn_dim)}

  @property
  def modality_token_ids(self) -> dict[str, tuple[int, ...]]:
    """MINER stage-1 id sets (`miner.token_modality_masks(input_ids, ids)`).

    Qwen2's tokenizer holds <|im_start|>, <|im_end|>, <|AUDIO|>, <|audio_bos|>, <|audio_eos|>
    at consecutive ids (151644..151648), so the special ids sit at audio_token_id -2, -1, +1, +2;
    tiny checkpoints (data/synthetic/demo_qwen2_audio.py) keep that layout.
    """
    a = self.audio_token_id
    return {"special_ids": (a - 2, a - 1, a + 1, a + 2), "image_ids": (), "video_ids": (), "audio_ids": (a,)}


def splice_index(input_ids, audio_token_id: int, n_features, max_features: int):
  """Flat feature row of every token: int32[B, T] (-1 = keep the token embedding).

  input_ids int[B, T]; n_features int[N] valid features of each audio; features are stored
  as [N, max_features]. The k-th audio token (row-major) takes the k-th valid feature.
  """
  is_audio = input_ids == audio_token_id
  k = jnp.cumsum(is_audio.reshape(-1)).reshape(is_audio.shape) - 1
  ends = jnp.cumsum(n_features)
  audio = jnp.sum(ends[None, None, :] <= k[..., None], axis=-1)
  audio = jnp.clip(audio, 0, n_features.shape[0] - 1)
  within = k - (ends[audio] - n_features[audio])
  return jnp.where(is_audio, audio * max_features + within, -1).astype(jnp.int32)


class Qwen2Audio(nn.Module):
  """Full model. `capture`: module names whose neurons come back in aux[name]['neurons']."""
  cfg: Qwen2AudioConfig
  policy: Policy = Policy()
  capture: tuple[str, ...] = ()
  return_kv: bool = False
  remat: bool = False
  extra_inputs = ("input_features", "feature_attention_mask")
  generation_keeps_position_ids = False  # generate.py: positions restart from the attention mask

  @nn.compact
  def __call__(self, input_ids, positions, attn_mask, *, input_features=None, feature_attention_mask=None, masks=None,
               probe=None, lens=None, cache=None, cache_index=None):
    """input_ids int[B, T]; positions int[B, T]; attn_mask a `CausalMask` or float32[B, T, S]; input_features
    float[N, M, 2P] log-mel (one row per audio); feature_attention_mask int[N, 2P].

    Returns (logits float32[B, T, V], aux {'llm': ..., 'audio': ...}).
    """
    c, p = self.cfg, self.policy
    masks, probe = masks or {}, probe or {}
    aux, features, feature_index = {}, None, None
    if input_features is not None:
      if feature_attention_mask is None:
        frames = jnp.full(input_features.shape[:1], input_features.shape[-1], jnp.int32)
      else:
        frames = jnp.sum(feature_attention_mask.astype(jnp.int32), axis=-1)
      enc, aux["audio"] = AudioEncoder(cfg=c.audio, policy=p, capture="audio" in self.capture, name="audio")(
          input_features, frames, masks.get("audio"), probe.get("audio"))
      proj = Dense(features=c.text.hidden_size, use_bias=True, policy=p, name="projector")(enc)  # [N, P // 2, D]
      features = proj.reshape(-1, proj.shape[-1])
      _, n_features = encoder_lengths(frames)
      feature_index = splice_index(input_ids, c.audio_token_id, n_features, proj.shape[1])
    logits, aux["llm"] = llama.decode(self, input_ids, positions, attn_mask, features=features,
                                      feature_index=feature_index, masks=masks, probe=probe, lens=lens, cache=cache,
                                      cache_index=cache_index)
    return logits, aux


def init_inputs(cfg: Qwen2AudioConfig, tokens: int = 8) -> tuple[tuple, dict]:
  """Dummy (args, kwargs) for `Qwen2Audio.init` (e.g. under jax.eval_shape): one silent audio."""
  a = cfg.audio
  ids = jnp.zeros((1, tokens), jnp.int32)
  bias = jnp.zeros((1, tokens, tokens), jnp.float32)
  kwargs = dict(input_features=jnp.zeros((1, a.num_mel_bins, a.num_frames), jnp.float32),
                feature_attention_mask=jnp.ones((1, a.num_frames), jnp.int32))
  return (ids, jnp.zeros((1, tokens), jnp.int32), bias), kwargs


# -- host-side checks and groups (numpy) ------------------------------------------------------

def audio_rows(cfg: Qwen2AudioConfig, input_ids, feature_attention_mask) -> np.ndarray:
  """Batch row of every audio: int32[N]. Audios fill the rows' `<|AUDIO|>` tokens in order;
  raises when the token counts do not match the features (HF raises too)."""
  ids = np.asarray(input_ids)
  _, n_feat = encoder_lengths(np.asarray(feature_attention_mask).astype(np.int64).sum(-1))
  per_row = (ids == cfg.audio_token_id).sum(-1)
  if per_row.sum() != n_feat.sum():
    raise ValueError(f"input_ids holds {int(per_row.sum())} audio tokens ({cfg.audio_token_id}) but "
                     f"feature_attention_mask gives {int(n_feat.sum())} audio features ({n_feat.tolist()} per audio)")
  rows, row, left = [], 0, per_row.copy()
  for n in n_feat:
    while row < len(left) and left[row] == 0:
      row += 1
    if row == len(left) or left[row] < n:
      raise ValueError(f"input_ids row {min(row, len(left) - 1)}: an audio of {int(n)} features does not fit its "
                       f"<|AUDIO|> tokens ({per_row.tolist()} per row)")
    left[row] -= n
    rows.append(row)
  return np.asarray(rows, np.int32)


def prepare(cfg: Qwen2AudioConfig, batch: dict) -> dict:
  """Host-side checks of the HF processor outputs; adds `audio_rows` int32[N] (batch row of
  each audio). The forward itself needs nothing prepared (the splice is computed on device)."""
  out = dict(batch)
  if "audio_rows" in batch or batch.get("input_features") is None:  # prepared already / text only
    return out
  a = cfg.audio
  feats = np.asarray(batch["input_features"])
  if feats.ndim != 3 or feats.shape[1:] != (a.num_mel_bins, a.num_frames):
    raise ValueError(f"input_features has shape {feats.shape}; expected (N, {a.num_mel_bins}, {a.num_frames}) "
                     f"(num_mel_bins, 2 * max_source_positions; the processor pads to the full chunk)")
  fam = batch.get("feature_attention_mask")
  if fam is None:
    raise ValueError("batch has input_features but no feature_attention_mask (Qwen2-Audio needs both)")
  if np.shape(fam) != (feats.shape[0], feats.shape[2]):
    raise ValueError(f"feature_attention_mask has shape {np.shape(fam)}; expected {(feats.shape[0], feats.shape[2])}")
  out["audio_rows"] = audio_rows(cfg, batch["input_ids"], fam)
  return out


def token_groups(cfg: Qwen2AudioConfig, prepared: dict, sample_groups, media_only: bool = False) -> dict:
  """Group id of every token each probe module sees; -1 = not counted.

  sample_groups int[B]. Returns {'llm': int32[B, T], 'audio': int32[N, P]}: padding never
  counts; `media_only` (here: audio only) keeps only `<|AUDIO|>` positions in the LLM. Encoder
  frames take their audio's row group; padded frames (j >= (f - 1) // 2 + 1) count nowhere.
  """
  sample_groups = np.asarray(sample_groups, np.int32)
  ids = np.asarray(prepared["input_ids"])
  am = np.asarray(prepared.get("attention_mask", np.ones_like(ids))).astype(bool)
  keep = am & (ids == cfg.audio_token_id) if media_only else am
  out = {"llm": np.where(keep, sample_groups[:, None], -1).astype(np.int32)}
  if prepared.get("input_features") is not None:
    fam = np.asarray(prepared["feature_attention_mask"])
    rows = prepared.get("audio_rows")
    rows = audio_rows(cfg, ids, fam) if rows is None else np.asarray(rows)
    valid, _ = encoder_lengths(fam.astype(np.int64).sum(-1))
    frames = np.arange(cfg.audio.max_source_positions)[None, :] < valid[:, None]
    out["audio"] = np.where(frames, sample_groups[rows][:, None], -1).astype(np.int32)
  return out


def hf_rules(cfg: Qwen2AudioConfig):
  """Param path <- HF name, accepting both layouts (hub / v5-saved 'language_model.model.*',
  'audio_tower.*', 'multi_modal_projector.*' and v5 in-memory 'model.language_model.*', ...)."""

  def nest(prefix, rules):
    return [dataclasses.replace(r, path=(prefix,) + r.path) for r in rules]

  rules = nest("llm", llama.hf_rules(cfg.text, ("language_model.model.", "model.language_model."),
                                     ("language_model.lm_head.", "lm_head.")))
  rules += nest("audio", whisper_audio.hf_rules(cfg.audio, ("audio_tower.", "model.audio_tower.")))
  proj = ("multi_modal_projector.linear.", "model.multi_modal_projector.linear.")
  rules += [Rule(("projector", "kernel"), tuple(p + "weight" for p in proj), transpose),
            Rule(("projector", "bias"), tuple(p + "bias" for p in proj))]
  return rules


# -- the family checklist (models/registry.py CHECKLIST, docs/ADDING_A_FAMILY.md) ----------------
NAME = "qwen2_audio"
Config = Qwen2AudioConfig
Module = Qwen2Audio
PROBE_MODULES = ("llm", "audio")
IGNORE = ()
