"""LLaVA-NeXT: CLIP vision tower -> GELU projector -> anyres packing -> Llama/Mistral decoder.

Probe modules: `llm` (decoder MLPs), `vision` (CLIP MLPs, all layers), `projector` (linear_1 -> act).
"""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mmneuron_jax.convert import hf_config
from mmneuron_jax.convert.checks import reject_unsupported
from mmneuron_jax.convert.mapping import Rule
from mmneuron_jax.convert.transforms import transpose
from mmneuron_jax.models import anyres, clip, llama
from mmneuron_jax.models.clip import VisionConfig, VisionTower
from mmneuron_jax.models.llama import Decoder, DecoderConfig
from mmneuron_jax.nn.mlp import MLP
from mmneuron_jax.nn.policy import Policy

HF_FIELDS = ("model_type", "image_token_index", "image_grid_pinpoints", "projector_hidden_act", "vision_feature_layer",
             "vision_feature_select_strategy", "multimodal_projector_bias", "tie_word_embeddings")
# use_image_newline_parameter: HF's model always has image_newline; image_seq_length: the processor's;
# vocab_size: a legacy top-level copy (the text config's is read).
HF_IGNORED = ("use_image_newline_parameter", "image_seq_length", "vocab_size")


def tiled_probe_modules(cfg) -> dict[str, tuple[int, int]]:
  """(layers, width) of each probe module of a LLaVA config (`llm` decoder MLPs, `vision` tower
  MLPs, `projector` linear_1 -> act); shared by the LLaVA families."""
  return {"llm": (cfg.text.num_layers, cfg.text.intermediate_size),
          "vision": (cfg.vision.num_layers, cfg.vision.intermediate_size),
          "projector": (1, cfg.text.hidden_size)}


def vision_and_layers(c: dict, defaults: dict, where: str, vision_cls):
  """(vision config, feature layers) of a filled LLaVA config.json: `vision_cls.from_hf` of its
  vision_config and `vision_feature_layer` as a tuple, each a layer of that tower (1-based, or
  negative from the end) or refused; shared by the LLaVA families."""
  layers = c["vision_feature_layer"]
  layers = (layers,) if isinstance(layers, int) else tuple(layers)
  vision_c, vision_defaults = hf_config.sub_config(c, defaults, "vision_config")
  vision = vision_cls.from_hf(vision_c, f"{where}: vision_config", defaults=vision_defaults)
  for k in layers:
    if not (1 <= (k if k >= 0 else vision.num_layers + 1 + k) <= vision.num_layers):
      reject_unsupported(where, {"vision_feature_layer": (k, set(range(1, vision.num_layers + 1)))})
  return vision, layers


@dataclasses.dataclass(frozen=True)
class LlavaNextConfig:
  text: DecoderConfig
  vision: VisionConfig
  image_token_id: int
  feature_layers: tuple[int, ...]
  pinpoints: tuple[tuple[int, int], ...]
  projector_act: str = "gelu"
  projector_bias: bool = True

  @classmethod
  def from_hf(cls, c: dict, where: str = "config.json") -> "LlavaNextConfig":
    """From a HF LLaVA-NeXT config.json (the hub's sparse layout or filled): read as HF reads it,
    with HF's class defaults filled in at every level; unknown non-default fields raise."""
    c, defaults = hf_config.fill(c, where)
    hf_config.check_fields(c, defaults, HF_FIELDS, where, HF_IGNORED)
    text, text_defaults = hf_config.sub_config(c, defaults, "text_config")
    reject_unsupported(where, {
        "vision_feature_select_strategy": (c["vision_feature_select_strategy"], {"default"}),
        "text_config.model_type": (text.get("model_type"), {"llama", "mistral"}),
        "projector_hidden_act": (c["projector_hidden_act"], {"gelu"}),
        "tie_word_embeddings == text_config.tie_word_embeddings": (
            bool(c.get("tie_word_embeddings", text.get("tie_word_embeddings"))) ==
            bool(text.get("tie_word_embeddings")), {True}),
    })
    vision, layers = vision_and_layers(c, defaults, where, VisionConfig)
    decoder = DecoderConfig.from_hf(text, f"{where}: text_config", defaults=text_defaults)
    return cls(text=decoder, vision=vision,
               image_token_id=c.get("image_token_index", c.get("image_token_id", 32000)),
               feature_layers=layers, pinpoints=tuple(tuple(p) for p in c["image_grid_pinpoints"]),
               projector_act=c.get("projector_hidden_act", "gelu"),
               projector_bias=c.get("multimodal_projector_bias", True))

  probe_modules = property(tiled_probe_modules)


class LlavaNext(nn.Module):
  """Full model. `capture`: module names whose neurons come back in aux[name]['neurons']."""
  cfg: LlavaNextConfig
  policy: Policy = Policy()
  capture: tuple[str, ...] = ()
  return_kv: bool = False
  remat: bool = False
  extra_inputs = ("pixel_values", "feature_index")  # prepared-batch keys this module takes
  generation_keeps_position_ids = False  # generate.py: positions restart from the attention mask

  @nn.compact
  def __call__(self, input_ids, positions, attn_mask, *, pixel_values=None, feature_index=None, masks=None,
               probe=None, lens=None, cache=None, cache_index=None):
    """input_ids int[B, T]; pixel_values float[N, C, H, W] (all tile slots); feature_index int32[B, T].

    Returns (logits float32[B, T, V], aux {'llm': ..., 'vision': ..., 'projector': ...}).
    """
    c, p = self.cfg, self.policy
    masks, probe = masks or {}, probe or {}
    aux = {}
    features = None
    newline = self.param("image_newline", nn.initializers.normal(0.02), (c.text.hidden_size,), p.param)
    if pixel_values is not None:
      features, tower_aux = feature_table(self, VisionTower, pixel_values, newline, masks, probe, class_tokens=1)
      aux.update(tower_aux)
    decoder = Decoder(cfg=c.text, policy=p, capture="llm" in self.capture, return_kv=self.return_kv, remat=self.remat,
                      name="llm")
    logits, aux["llm"] = decoder(
        input_ids, positions, attn_mask, features=features, feature_index=feature_index, mask=masks.get("llm"),
        probe=probe.get("llm"), lens=lens, cache=cache, cache_index=cache_index)
    return logits, aux


def feature_table(module, tower, pixel_values, newline, masks: dict, probe: dict, *, class_tokens: int):
  """The image half of a LLaVA forward, called inside `module`'s compact `__call__` (its 'vision'
  and 'projector' submodules are made here): `tower` on every tile slot, the chosen layers' hidden
  states less the first `class_tokens` tokens concatenated, the projector -> (table
  float[N * P + 1, D]: the projected patch features of all tiles, then `newline`; aux {'vision',
  'projector'}); shared by the LLaVA families."""
  c, p = module.cfg, module.policy
  _, vaux = tower(cfg=c.vision, policy=p, capture="vision" in module.capture, name="vision")(
      pixel_values, masks.get("vision"), probe.get("vision"))
  hidden = vaux.pop("hidden")
  picks = [k - 1 if k > 0 else c.vision.num_layers + k for k in c.feature_layers]
  selected = jnp.concatenate([hidden[i][:, class_tokens:] for i in picks], axis=-1)
  pmask = masks.get("projector")
  projector = MLP(hidden=c.text.hidden_size, act=c.projector_act, out_features=c.text.hidden_size,
                  use_bias=c.projector_bias, policy=p, name="projector")
  feats, neurons = projector(selected, None if pmask is None else jax.tree_util.tree_map(lambda m: m[0], pmask))
  paux = {}
  if "projector" in module.capture:
    paux["neurons"] = neurons[None]
  if probe.get("projector") is not None:
    paux["probe"] = jax.tree_util.tree_map(lambda a: a[None], probe["projector"](neurons))  # 1 layer
  table = jnp.concatenate([feats.reshape(-1, feats.shape[-1]), newline[None].astype(feats.dtype)], 0)
  return table, {"vision": vaux, "projector": paux}


def flat_tiles(pixel_values, sizes, pinpoints, tile_size: int):
  """pixel_values float[I, S, C, H, W] (padded tile slots) or [N, C, H, W] (tiles back to back), for
  images of `sizes` int[I, 2] -> (float[N, C, H, W], slots int[I] tile slots per image, valid bool[N]);
  shared by the LLaVA families. A shape that does not fit the images' tile counts raises."""
  needed = np.array([anyres.num_tiles(s, pinpoints, tile_size) for s in sizes])
  if pixel_values.ndim == 5:
    if pixel_values.shape[0] != len(sizes) or pixel_values.shape[1] < needed.max():
      raise ValueError(f"pixel_values shape {pixel_values.shape} does not fit image_sizes {sizes.tolist()} "
                       f"(tiles needed per image: {needed.tolist()})")
    slots = np.full(len(sizes), pixel_values.shape[1])
    valid = (np.arange(pixel_values.shape[1])[None] < needed[:, None]).reshape(-1)
    pixel_values = pixel_values.reshape((-1,) + pixel_values.shape[2:])
  elif pixel_values.ndim == 4:
    if pixel_values.shape[0] != needed.sum():
      raise ValueError(f"pixel_values has {pixel_values.shape[0]} tiles; image_sizes need {needed.sum()}")
    slots, valid = needed, np.ones(pixel_values.shape[0], bool)
  else:
    raise ValueError(f"pixel_values must be 4-D or 5-D, got shape {pixel_values.shape}")
  return pixel_values, slots, valid


def tile_batch(cfg, batch: dict, family: str, drop: tuple[str, ...] = ()) -> tuple:
  """The start of a tiled LLaVA `prepare` (`batch` has pixel_values): (out: the batch less
  image_sizes and `drop`, its pixel_values float32[N, C, H, W] by `flat_tiles`; sizes int[I, 2];
  slots int[I]; valid bool[N]); shared by the LLaVA families. No image_sizes raises, naming `family`."""
  out = {k: v for k, v in batch.items() if k not in ("image_sizes", "pixel_values") + drop}
  pixel_values = np.asarray(batch["pixel_values"])
  if "image_sizes" not in batch:
    raise ValueError(f"batch has pixel_values but no image_sizes ({family} needs both)")
  sizes = np.asarray(batch["image_sizes"]).reshape(-1, 2)
  pixel_values, slots, valid = flat_tiles(pixel_values, sizes, cfg.pinpoints, cfg.vision.image_size)
  out["pixel_values"] = pixel_values.astype(np.float32)
  return out, sizes, slots, valid


def prepare(cfg: LlavaNextConfig, batch: dict) -> dict:
  """Host-side: HF processor outputs -> arrays for the jitted forward.

  Adds `feature_index` int32[B, T] and `tile_valid` bool[N] and flattens 5-D pixel_values
  [I, S, C, H, W] to [I*S, C, H, W]; drops `image_sizes`.
  """
  if "feature_index" in batch or batch.get("pixel_values") is None:  # prepared already / text only
    return dict(batch)
  out, sizes, slots, valid = tile_batch(cfg, batch, "LLaVA-NeXT")
  v = cfg.vision
  side = v.image_size // v.patch_size
  out["feature_index"] = anyres.feature_index(batch["input_ids"], cfg.image_token_id, sizes, list(cfg.pinpoints),
                                              v.image_size, side, slots)
  out["tile_valid"] = valid
  out["tile_image"] = np.repeat(np.arange(len(sizes)), slots).astype(np.int32)
  out["image_rows"] = anyres.image_rows(batch["input_ids"], cfg.image_token_id, sizes, list(cfg.pinpoints),
                                        v.image_size, side)
  return out


def token_groups(cfg: LlavaNextConfig, prepared: dict, sample_groups, media_only: bool = False) -> dict:
  """Group id of every token each probe module sees; -1 = not counted.

  sample_groups int[B] (e.g. domain of each row, -1 to skip a row). Returns
  {'llm': int32[B, T], 'vision': int32[N, 1 + P], 'projector': int32[N, P]}: padding never
  counts, nor padded tile slots; `media_only` keeps only image-token positions in the LLM.
  """
  return tiled_token_groups(prepared, sample_groups, media_only, patches=cfg.vision.num_patches, class_tokens=1)


def tiled_token_groups(prepared: dict, sample_groups, media_only: bool, *, patches: int, class_tokens: int) -> dict:
  """`token_groups` of a tiled (anyres) LLaVA: the vision tower sees `class_tokens + patches` tokens
  per tile slot, the projector `patches`; shared by the LLaVA families."""
  sample_groups = np.asarray(sample_groups, np.int32)
  ids = np.asarray(prepared["input_ids"])
  am = np.asarray(prepared.get("attention_mask", np.ones_like(ids))).astype(bool)
  keep = am & (np.asarray(prepared["feature_index"]) >= 0) if media_only and "feature_index" in prepared else am
  if media_only and "feature_index" not in prepared:
    keep = np.zeros_like(am)
  out = {"llm": np.where(keep, sample_groups[:, None], -1).astype(np.int32)}
  if "tile_valid" in prepared:
    per_tile = np.where(prepared["tile_valid"], sample_groups[prepared["image_rows"]][prepared["tile_image"]], -1)
    out["vision"] = np.repeat(per_tile[:, None], patches + class_tokens, axis=1).astype(np.int32)
    out["projector"] = np.repeat(per_tile[:, None], patches, axis=1).astype(np.int32)
  return out


def hf_rules(cfg: LlavaNextConfig):
  """Param path <- HF name, accepting both layouts (hub/v5-saved 'language_model.model.*',
  'vision_tower.vision_model.*' and in-memory v5 'model.language_model.*', 'model.vision_tower.*')."""
  return llava_rules(cfg, tower_rules=clip.hf_rules)


def llava_rules(cfg, *, tower_rules):
  """hf_rules of a LLaVA layout (decoder, `tower_rules(cfg.vision, prefixes)` vision tower, two-layer
  projector, image_newline); shared by the LLaVA families."""

  def nest(prefix, rules):
    return [dataclasses.replace(r, path=(prefix,) + r.path) for r in rules]

  rules = nest("llm", llama.hf_rules(cfg.text, ("language_model.model.", "model.language_model."),
                                     ("language_model.lm_head.", "lm_head.")))
  rules += nest("vision", tower_rules(cfg.vision, ("vision_tower.vision_model.", "vision_tower.",
                                                   "model.vision_tower.vision_model.", "model.vision_tower.")))
  for ours, theirs in (("fc1", "linear_1"), ("fc2", "linear_2")):
    alts = tuple(p + f"multi_modal_projector.{theirs}." for p in ("", "model."))
    rules.append(Rule(("projector", ours, "kernel"), tuple(a + "weight" for a in alts), transpose))
    if cfg.projector_bias:
      rules.append(Rule(("projector", ours, "bias"), tuple(a + "bias" for a in alts)))
  rules.append(Rule(("image_newline",), ("image_newline", "model.image_newline")))
  return rules


# -- the family checklist (models/registry.py CHECKLIST, docs/ADDING_A_FAMILY.md) ----------------
NAME = "llava_next"
Config = LlavaNextConfig
Module = LlavaNext
PROBE_MODULES = ("llm", "vision", "projector")
IGNORE = ()
# MINER stage-1 id sets of the real LLaVA-NeXT tokenizers (vicuna / mistral): <image> only.
TOKEN_IDS = {"special_ids": (), "image_ids": (32000,), "video_ids": (), "audio_ids": ()}


def init_inputs(cfg: LlavaNextConfig, tokens: int = 8) -> tuple[tuple, dict]:
  """Dummy (args, kwargs) for `LlavaNext.init` (e.g. under jax.eval_shape): one tile, no image token."""
  v = cfg.vision
  ids = jnp.zeros((1, tokens), jnp.int32)
  kwargs = dict(pixel_values=jnp.zeros((1, v.num_channels, v.image_size, v.image_size), jnp.float32),
                feature_index=jnp.full((1, tokens), -1, jnp.int32))
  return (ids, jnp.zeros((1, tokens), jnp.int32), jnp.zeros((1, tokens, tokens), jnp.float32)), kwargs
