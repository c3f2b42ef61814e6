"""InstructBLIP (Salesforce/instructblip-vicuna-*): EVA ViT -> Q-Former (queries + instruction)
-> `language_projection` -> query outputs spliced into a Vicuna (Llama) decoder.

As transformers (v5) does: the processor puts `num_query_tokens` image tokens
(`config.image_token_index`) in `input_ids` and the projected query outputs replace them, in
row-major order (`masked_scatter`); here through the decoder's `features` / `feature_index`.

Probe modules: `llm` (decoder MLPs, neuron silu(gate_proj(x))), `vision` (EVA MLPs, act(fc1(x)),
tokens `[B, 1 + P]`), `qformer_query` (Q-Former `intermediate_query` on the Q query positions,
tokens `[B, Q]`) and `qformer_text` (`intermediate` on the instruction positions, tokens
`[B, T_text]`). Flan-T5 (encoder-decoder) language models are not supported.
"""
import dataclasses

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from mmneuron_jax.convert import hf_config
from mmneuron_jax.convert.checks import UnsupportedConfigError, reject_unsupported
from mmneuron_jax.convert.mapping import Rule
from mmneuron_jax.convert.transforms import transpose
from mmneuron_jax.models import eva, llama, qformer
from mmneuron_jax.models.eva import EvaConfig, EvaVisionTower
from mmneuron_jax.models.llama import Decoder, DecoderConfig
from mmneuron_jax.models.qformer import QUERY, TEXT, QFormer, QFormerConfig
from mmneuron_jax.nn.layers import Dense
from mmneuron_jax.nn.policy import Policy

SEQ2SEQ_TEXT_MODELS = ("t5", "mt5", "umt5", "bart")
HF_FIELDS = ("model_type", "num_query_tokens", "image_token_index", "image_token_id",
             "use_decoder_only_language_model", "tie_word_embeddings")


@dataclasses.dataclass(frozen=True)
class InstructBlipConfig:
  text: DecoderConfig
  vision: EvaConfig
  qformer: QFormerConfig
  num_query_tokens: int
  image_token_id: int

  @classmethod
  def from_hf(cls, c: dict, where: str = "config.json") -> "InstructBlipConfig":
    """From a HF InstructBLIP config.json (the hub's sparse layout or filled): read as HF reads it,
    with HF's class defaults filled in at every level; unknown non-default fields raise."""
    text_type = (c.get("text_config") or {}).get("model_type", "opt")  # HF's default text sub-config is OPT
    if text_type in SEQ2SEQ_TEXT_MODELS or c.get("use_decoder_only_language_model") is False:
      raise UnsupportedConfigError(
          f"{where}: InstructBLIP with an encoder-decoder language model (text_config.model_type={text_type!r}, "
          "e.g. Salesforce/instructblip-flan-t5-*) is not supported; only the Vicuna/Llama decoder "
          "(Salesforce/instructblip-vicuna-*) is")
    reject_unsupported(where, {"text_config.model_type": (text_type, {"llama"})})
    c, defaults = hf_config.fill(c, where)
    hf_config.check_fields(c, defaults, HF_FIELDS, where)
    image_token = c.get("image_token_index", c.get("image_token_id"))
    if image_token is None:
      raise UnsupportedConfigError(
          f"{where}: image_token_index is missing; transformers >= 4.47 InstructBLIP checkpoints mark the "
          "num_query_tokens image positions in input_ids with it (older configs without it are not supported)")
    text, text_defaults = hf_config.sub_config(c, defaults, "text_config")
    if bool(c.get("tie_word_embeddings", False)) != bool(text.get("tie_word_embeddings", False)):
      reject_unsupported(where, {"tie_word_embeddings": (c["tie_word_embeddings"],
                                                         {text.get("tie_word_embeddings", False)})})
    vision_c, vision_defaults = hf_config.sub_config(c, defaults, "vision_config")
    vision = EvaConfig.from_hf(vision_c, f"{where}: vision_config", defaults=vision_defaults)
    qformer_c, qformer_defaults = hf_config.sub_config(c, defaults, "qformer_config")
    qformer = QFormerConfig.from_hf(qformer_c, vision.hidden_size, f"{where}: qformer_config",
                                    defaults=qformer_defaults)
    return cls(text=DecoderConfig.from_hf(text, f"{where}: text_config", defaults=text_defaults), vision=vision,
               qformer=qformer, num_query_tokens=int(c["num_query_tokens"]), image_token_id=int(image_token))

  @property
  def probe_modules(self) -> dict[str, tuple[int, int]]:
    q = (self.qformer.num_layers, self.qformer.intermediate_size)
    return {"llm": (self.text.num_layers, self.text.intermediate_size),
            "vision": (self.vision.num_layers, self.vision.intermediate_size),
            TEXT: q, QUERY: q}


class InstructBlip(nn.Module):
  """Full model. `capture`: module names whose neurons come back in aux[name]['neurons']."""
  cfg: InstructBlipConfig
  policy: Policy = Policy()
  capture: tuple[str, ...] = ()
  return_kv: bool = False
  remat: bool = False
  extra_inputs = ("pixel_values", "qformer_input_ids", "qformer_attention_mask", "feature_index")
  generation_keeps_position_ids = False  # generate.py: positions restart from the attention mask

  @nn.compact
  def __call__(self, input_ids, positions, attn_mask, *, pixel_values=None, qformer_input_ids=None,
               qformer_attention_mask=None, feature_index=None, masks=None, probe=None, lens=None, cache=None,
               cache_index=None):
    """input_ids int[B, T]; pixel_values float[N, C, H, W]; qformer_input_ids / qformer_attention_mask
    int[N, T_text]; feature_index int32[B, T] (see `prepare`).

    Returns (logits float32[B, T, V], aux {'llm', 'vision', 'qformer_query', 'qformer_text'}).
    """
    c, p = self.cfg, self.policy
    masks, probe = masks or {}, probe or {}
    aux = {}
    features = None
    query_tokens = self.param("query_tokens", nn.initializers.normal(0.02),
                              (c.num_query_tokens, c.qformer.hidden_size), p.param)
    if pixel_values is not None:
      image, aux["vision"] = EvaVisionTower(cfg=c.vision, policy=p, capture="vision" in self.capture, name="vision")(
          pixel_values, masks.get("vision"), probe.get("vision"))
      qformer = QFormer(cfg=c.qformer, policy=p, capture=tuple(n for n in (QUERY, TEXT) if n in self.capture),
                        name="qformer")
      query_out, qaux = qformer(query_tokens, image, qformer_input_ids, qformer_attention_mask,
                                {k: masks[k] for k in (QUERY, TEXT) if k in masks},
                                {k: probe[k] for k in (QUERY, TEXT) if k in probe})
      aux.update(qaux)
      feats = Dense(features=c.text.hidden_size, use_bias=True, policy=p, name="language_projection")(query_out)
      features = feats.reshape(-1, c.text.hidden_size)
    decoder = Decoder(cfg=c.text, policy=p, capture="llm" in self.capture, return_kv=self.return_kv, remat=self.remat,
                      name="llm")
    logits, aux["llm"] = decoder(
        input_ids, positions, attn_mask, features=features, feature_index=feature_index, mask=masks.get("llm"),
        probe=probe.get("llm"), lens=lens, cache=cache, cache_index=cache_index)
    return logits, aux


def feature_index(input_ids, image_token_id: int, num_query_tokens: int, num_images: int):
  """int32[B, T]: k for the k-th image token in row-major order (HF masked_scatter), else -1.

  Each row must hold exactly `num_query_tokens` image tokens (one image per sample)."""
  ids = np.asarray(input_ids)
  is_image = ids == image_token_id
  per_row = is_image.sum(axis=1)
  if ids.shape[0] != num_images or np.any(per_row != num_query_tokens):
    raise ValueError(f"input_ids: every row needs exactly {num_query_tokens} image tokens (id {image_token_id}) "
                     f"for its image; got {per_row.tolist()} for {num_images} image(s)")
  order = np.cumsum(is_image.reshape(-1)).reshape(ids.shape) - 1
  return np.where(is_image, order, -1).astype(np.int32)


def prepare(cfg: InstructBlipConfig, batch: dict) -> dict:
  """Host-side: HF processor outputs -> arrays for the jitted forward.

  Adds `feature_index` int32[B, T] and a default `qformer_attention_mask` (all ones); checks that
  pixel_values float[B, C, H, W] holds one image per row and `qformer_input_ids` is present.
  """
  out = dict(batch)
  if "feature_index" in batch or batch.get("pixel_values") is None:  # prepared already / text only
    return out
  pixel_values = np.asarray(batch["pixel_values"], np.float32)
  if pixel_values.ndim != 4:
    raise ValueError(f"pixel_values must be [B, C, H, W], got shape {pixel_values.shape}")
  if batch.get("qformer_input_ids") is None:
    raise ValueError("batch has pixel_values but no qformer_input_ids (InstructBLIP's Q-Former reads the "
                     "instruction; the HF processor returns both)")
  qids = np.asarray(batch["qformer_input_ids"])
  qmask = batch.get("qformer_attention_mask")
  qmask = np.ones_like(qids) if qmask is None else np.asarray(qmask)
  if qids.shape[0] != pixel_values.shape[0] or qmask.shape != qids.shape:
    raise ValueError(f"qformer_input_ids {qids.shape} / qformer_attention_mask {qmask.shape} must have one row "
                     f"per image ({pixel_values.shape[0]})")
  out.update(pixel_values=pixel_values, qformer_input_ids=qids, qformer_attention_mask=qmask,
             feature_index=feature_index(batch["input_ids"], cfg.image_token_id, cfg.num_query_tokens,
                                         pixel_values.shape[0]))
  return out


def token_groups(cfg: InstructBlipConfig, prepared: dict, sample_groups, media_only: bool = False) -> dict:
  """Group id of every token each probe module sees; -1 = not counted.

  llm [B, T] (padding never counts; `media_only` keeps only the query-output positions);
  vision [B, 1 + P]; qformer_query [B, Q]; qformer_text [B, T_text] (Q-Former text padding -1).
  """
  sample_groups = np.asarray(sample_groups, np.int32)
  ids = np.asarray(prepared["input_ids"])
  am = np.asarray(prepared.get("attention_mask", np.ones_like(ids))).astype(bool)
  if media_only:
    am = am & (np.asarray(prepared["feature_index"]) >= 0) if "feature_index" in prepared else np.zeros_like(am)
  out = {"llm": np.where(am, sample_groups[:, None], -1).astype(np.int32)}
  if prepared.get("pixel_values") is not None:
    rows = sample_groups[:, None]
    out["vision"] = np.repeat(rows, cfg.vision.num_patches + 1, axis=1).astype(np.int32)
    out[QUERY] = np.repeat(rows, cfg.num_query_tokens, axis=1).astype(np.int32)
    qmask = np.asarray(prepared["qformer_attention_mask"]).astype(bool)
    out[TEXT] = np.where(qmask, rows, -1).astype(np.int32)
  return out


def hf_rules(cfg: InstructBlipConfig):
  """Param path <- HF name. transformers (hub and v5 save_pretrained) writes `language_model.model.*`,
  `language_model.lm_head.*`, `vision_model.*`, `qformer.*`, `query_tokens`, `language_projection.*`;
  the vision qkv bias is read fused (`qkv.bias`) or from LAVIS-style `q_bias` / `v_bias`."""

  def nest(prefix, rules):
    return [dataclasses.replace(r, path=(prefix,) + r.path) for r in rules]

  rules = nest("llm", llama.hf_rules(cfg.text, ("language_model.model.",), ("language_model.lm_head.",)))
  rules += nest("vision", eva.hf_rules(cfg.vision, "vision_model."))
  rules += nest("qformer", qformer.hf_rules(cfg.qformer, "qformer."))
  rules += [Rule(("query_tokens",), "query_tokens", eva.unbatch),
            Rule(("language_projection", "kernel"), "language_projection.weight", transpose),
            Rule(("language_projection", "bias"), "language_projection.bias")]
  return rules


# Buffers older checkpoints saved that carry no weights.


# -- the family checklist (models/registry.py CHECKLIST, docs/ADDING_A_FAMILY.md) ----------------
NAME = "instructblip"
Config = InstructBlipConfig
Module = InstructBlip
PROBE_MODULES = ("llm", "vision", TEXT, QUERY)
IGNORE = (r"^qformer\.embeddings\.position_ids$", r"rotary_emb\.inv_freq$")
# MINER stage-1 id sets of the real InstructBLIP (vicuna-7b) tokenizer: the image token only.
TOKEN_IDS = {"special_ids": (), "image_ids": (32001,), "video_ids": (), "audio_ids": ()}


def init_inputs(cfg: InstructBlipConfig, tokens: int = 8) -> tuple[tuple, dict]:
  """Dummy (args, kwargs) for `InstructBlip.init` (e.g. under jax.eval_shape): one image, one
  Q-Former instruction token, no image token in the LLM."""
  v = cfg.vision
  ids = jnp.zeros((1, tokens), jnp.int32)
  kwargs = dict(pixel_values=jnp.zeros((1, v.num_channels, v.image_size, v.image_size), jnp.float32),
                qformer_input_ids=jnp.zeros((1, 1), jnp.int32), qformer_attention_mask=jnp.ones((1, 1), jnp.int32),
                feature_index=jnp.full((1, tokens), -1, jnp.int32))
  return (ids, jnp.zeros((1, tokens), jnp.int32), jnp.zeros((1, tokens, tokens), jnp.float32)), kwargs
