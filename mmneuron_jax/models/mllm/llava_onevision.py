"""LLaVA-OneVision: SigLIP vision tower -> GELU projector -> anyres-max packing -> Qwen2 decoder.

Probe modules: `llm` (decoder MLPs), `vision` (SigLIP MLPs, all layers), `projector` (linear_1 -> act).
Packing is HF's `pack_image_features`: the base tile's features, then the tile grid's feature map
unpadded to the image's aspect ratio and, when it holds more than 1.1x `max_num_patches` tiles' worth,
shrunk with torch's bilinear `interpolate` (align_corners=False, no antialias), each row followed by
`image_newline`. Every image token is a weighted sum of at most four rows of the projected feature
table: the taps and weights are host-side arithmetic (`prepare`), the sum is in the forward.
Videos are not implemented (HF's video processor needs torchvision).
"""
import dataclasses
import math

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from mmneuron_jax.convert import hf_config
from mmneuron_jax.convert.checks import reject_unsupported
from mmneuron_jax.models import anyres, siglip
from mmneuron_jax.models.mllm import llava_next
from mmneuron_jax.models.llama import Decoder, DecoderConfig
from mmneuron_jax.models.siglip import SiglipConfig, SiglipTower
from mmneuron_jax.nn.policy import Policy

HF_FIELDS = ("model_type", "image_token_index", "video_token_index", "image_grid_pinpoints", "projector_hidden_act",
             "vision_feature_layer", "vision_feature_select_strategy", "multimodal_projector_bias",
             "tie_word_embeddings", "vision_aspect_ratio")
HF_IGNORED = llava_next.HF_IGNORED  # the same processor / legacy fields
TAPS = 4  # bilinear: every packed feature mixes at most four projected features


@dataclasses.dataclass(frozen=True)
class LlavaOnevisionConfig:
  text: DecoderConfig
  vision: SiglipConfig
  image_token_id: int
  video_token_id: int
  feature_layers: tuple[int, ...]
  pinpoints: tuple[tuple[int, int], ...]
  max_num_patches: int = 9
  projector_act: str = "gelu"
  projector_bias: bool = True

  @classmethod
  def from_hf(cls, c: dict, where: str = "config.json") -> "LlavaOnevisionConfig":
    """From a HF LLaVA-OneVision config.json (the hub's sparse layout or filled): read as HF reads
    it, with HF's class defaults filled in at every level; unknown non-default fields raise."""
    c, defaults = hf_config.fill(c, where)
    hf_config.check_fields(c, defaults, HF_FIELDS, where, HF_IGNORED)
    text, text_defaults = hf_config.sub_config(c, defaults, "text_config")
    aspect = str(c.get("vision_aspect_ratio", "anyres_max_9"))
    reject_unsupported(where, {
        # SigLIP has no class token: 'default' would drop a patch and HF's packing then fails
        "vision_feature_select_strategy": (c["vision_feature_select_strategy"], {"full"}),
        "text_config.model_type": (text.get("model_type"), {"qwen2", "llama", "mistral"}),
        "projector_hidden_act": (c["projector_hidden_act"], {"gelu"}),
        "vision_aspect_ratio": (aspect.startswith("anyres_max_") and aspect[len("anyres_max_"):].isdigit(),
                                {True}),  # HF reads 'anyres_max_<n>'
        "tie_word_embeddings == text_config.tie_word_embeddings": (
            bool(c.get("tie_word_embeddings")) == bool(text.get("tie_word_embeddings")), {True}),
    })
    vision, layers = llava_next.vision_and_layers(c, defaults, where, SiglipConfig)
    decoder = DecoderConfig.from_hf(text, f"{where}: text_config", defaults=text_defaults)
    return cls(text=decoder, vision=vision, image_token_id=c["image_token_index"],
               video_token_id=c["video_token_index"], feature_layers=layers,
               pinpoints=tuple(tuple(p) for p in c["image_grid_pinpoints"]),
               max_num_patches=int(aspect[len("anyres_max_"):]),
               projector_act=c.get("projector_hidden_act", "gelu"),
               projector_bias=c.get("multimodal_projector_bias", True))

  probe_modules = property(llava_next.tiled_probe_modules)


# -- packing: host-side taps and weights ------------------------------------------------------------
def bilinear_taps(in_size: int, out_size: int):
  """torch `interpolate(mode='bilinear', align_corners=False)` along one axis, in its float32
  arithmetic: (i0 int[out], i1 int[out], w0 float32[out], w1 float32[out])."""
  scale = np.float32(in_size) / np.float32(out_size)
  src = scale * (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
  src = np.maximum(src, np.float32(0))
  i0 = src.astype(np.int64)
  i1 = i0 + (i0 < in_size - 1)
  w1 = (src - i0.astype(np.float32)).astype(np.float32)
  return i0, i1, (np.float32(1) - w1).astype(np.float32), w1


def packed_grid(size_hw, cfg_or_pinpoints, tile_size, side, max_num_patches):
  """(rows, cols, (r0, r1, c0, c1), (out_h, out_w) or None) of one image's tile grid: the grid in
  tiles, the unpadded window of its feature map, and the interpolated size if HF shrinks it."""
  rows, cols = anyres.grid_shape(size_hw, cfg_or_pinpoints, tile_size)
  window = anyres.unpad_window(rows * side, cols * side, size_hw)
  h, w = window[1] - window[0], window[3] - window[2]
  ratio = math.sqrt(h * w / (max_num_patches * side ** 2))
  out = (int(h // ratio), int(w // ratio)) if ratio > 1.1 else None
  return rows, cols, window, out


def image_taps(size_hw, pinpoints, tile_size, side, max_num_patches, first_tile, newline_index):
  """(int64[n, 4] flat feature rows, float32[n, 4] weights) of one image's n packed tokens, in HF's
  order: the base tile, then each row of the (unpadded, maybe shrunk) grid and its newline.
  first_tile: this image's base tile slot in the flat pixel batch."""
  per_tile = side * side
  base = first_tile * per_tile + np.arange(per_tile)
  rows, cols = anyres.grid_shape(size_hw, pinpoints, tile_size)
  if rows * cols == 0:
    flat = np.concatenate([base, [newline_index]])
    return np.repeat(flat[:, None], TAPS, 1), np.eye(1, TAPS, dtype=np.float32).repeat(len(flat), 0)
  rows, cols, (r0, r1, c0, c1), out = packed_grid(size_hw, pinpoints, tile_size, side, max_num_patches)

  def flat_of(r, c):  # rows/cols of the unpadded window -> flat feature rows
    r, c = r + r0, c + c0
    return (first_tile + 1 + (r // side) * cols + (c // side)) * per_tile + (r % side) * side + (c % side)

  h, w = r1 - r0, c1 - c0
  if out is None:
    r, c = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    idx = np.repeat(flat_of(r, c)[..., None], TAPS, -1)
    wts = np.broadcast_to(np.eye(1, TAPS, dtype=np.float32)[0], idx.shape).copy()
  else:
    y0, y1, wy0, wy1 = bilinear_taps(h, out[0])
    x0, x1, wx0, wx1 = bilinear_taps(w, out[1])
    Y = lambda a: a[:, None]  # noqa: E731
    idx = np.stack(np.broadcast_arrays(flat_of(Y(y0), x0[None]), flat_of(Y(y0), x1[None]),
                                       flat_of(Y(y1), x0[None]), flat_of(Y(y1), x1[None])), -1)
    wts = np.stack(np.broadcast_arrays(Y(wy0) * wx0[None], Y(wy0) * wx1[None], Y(wy1) * wx0[None],
                                       Y(wy1) * wx1[None]), -1).astype(np.float32)
  nl_idx = np.full(idx.shape[:1] + (1, TAPS), newline_index)
  nl_w = np.broadcast_to(np.eye(1, TAPS, dtype=np.float32)[0], nl_idx.shape)
  idx = np.concatenate([idx, nl_idx], 1).reshape(-1, TAPS)
  wts = np.concatenate([wts, nl_w], 1).reshape(-1, TAPS)
  base_w = np.broadcast_to(np.eye(1, TAPS, dtype=np.float32)[0], (per_tile, TAPS))
  return (np.concatenate([np.repeat(base[:, None], TAPS, 1), idx]),
          np.concatenate([base_w, wts]).astype(np.float32))


def num_image_tokens(size_hw, pinpoints, tile_size, side, max_num_patches) -> int:
  """Image tokens HF's processor writes for one (h, w) image (single-image prompts)."""
  rows, cols = anyres.grid_shape(size_hw, pinpoints, tile_size)
  if rows * cols == 0:
    return side * side + 1
  _, _, (r0, r1, c0, c1), out = packed_grid(size_hw, pinpoints, tile_size, side, max_num_patches)
  h, w = out if out is not None else (r1 - r0, c1 - c0)
  return side * side + h * (w + 1)


class LlavaOnevision(nn.Module):
  """Full model. `capture`: module names whose neurons come back in aux[name]['neurons']."""
  cfg: LlavaOnevisionConfig
  policy: Policy = Policy()
  capture: tuple[str, ...] = ()
  return_kv: bool = False
  remat: bool = False
  extra_inputs = ("pixel_values", "feature_index", "feature_taps", "feature_weights")  # prepared-batch keys
  generation_keeps_position_ids = False  # generate.py: positions restart from the attention mask

  @nn.compact
  def __call__(self, input_ids, positions, attn_mask, *, pixel_values=None, feature_index=None, feature_taps=None,
               feature_weights=None, masks=None, probe=None, lens=None, cache=None, cache_index=None):
    """input_ids int[B, T]; pixel_values float[N, C, H, W] (all tile slots); feature_index int32[B, T]
    (>= 0 at image tokens); feature_taps int32[B, T, 4] rows of the projected feature table
    `[N * P features..., image_newline]`, feature_weights float32[B, T, 4] their bilinear weights.

    Returns (logits float32[B, T, V], aux {'llm': ..., 'vision': ..., 'projector': ...}).
    """
    c, p = self.cfg, self.policy
    masks, probe = masks or {}, probe or {}
    aux = {}
    features = index = None
    newline = self.param("image_newline", nn.initializers.normal(0.02), (c.text.hidden_size,), p.param)
    if pixel_values is not None:  # SigLIP has no class token
      table, tower_aux = llava_next.feature_table(self, SiglipTower, pixel_values, newline, masks, probe,
                                                  class_tokens=0)
      aux.update(tower_aux)
      taps = jnp.clip(feature_taps, 0, table.shape[0] - 1)
      mixed = sum(feature_weights[..., k, None].astype(table.dtype) * table[taps[..., k]] for k in range(TAPS))
      b, t = input_ids.shape
      features = mixed.reshape(b * t, -1)
      index = jnp.where(feature_index >= 0, jnp.arange(b * t, dtype=jnp.int32).reshape(b, t), -1)
    decoder = Decoder(cfg=c.text, policy=p, capture="llm" in self.capture, return_kv=self.return_kv, remat=self.remat,
                      name="llm")
    logits, aux["llm"] = decoder(
        input_ids, positions, attn_mask, features=features, feature_index=index, mask=masks.get("llm"),
        probe=probe.get("llm"), lens=lens, cache=cache, cache_index=cache_index)
    return logits, aux


def prepare(cfg: LlavaOnevisionConfig, batch: dict) -> dict:
  """Host-side: HF processor outputs -> arrays for the jitted forward.

  Adds `feature_index` int32[B, T] (the first tap at image tokens, else -1), `feature_taps`
  int32[B, T, 4], `feature_weights` float32[B, T, 4], `tile_valid` bool[N], `tile_image` int32[N],
  `image_rows` int32[I]; flattens 5-D pixel_values [I, S, C, H, W] to [I*S, C, H, W]; drops
  `image_sizes`. One image per prompt (HF's multi-image path, `batch_num_images` > 1, is refused).
  """
  if "feature_index" in batch or batch.get("pixel_values") is None:  # prepared already / text only
    return dict(batch)
  if "batch_num_images" in batch and np.any(np.asarray(batch["batch_num_images"]) != 1):
    raise ValueError("batch_num_images != 1: LLaVA-OneVision's multi-image prompts are not implemented")
  out, sizes, slots, valid = llava_next.tile_batch(cfg, batch, "LLaVA-OneVision", drop=("batch_num_images",))
  v = cfg.vision
  side = v.image_size // v.patch_size
  starts = np.concatenate([[0], np.cumsum(slots)[:-1]]).astype(int)
  newline = int(slots.sum()) * side * side
  per_image = [image_taps(s, list(cfg.pinpoints), v.image_size, side, cfg.max_num_patches, f, newline)
               for s, f in zip(sizes, starts)]
  ids = np.asarray(batch["input_ids"])
  is_image = ids == cfg.image_token_id
  n_feat = sum(len(t) for t, _ in per_image)
  if int(is_image.sum()) != n_feat:
    raise ValueError(f"Image features and image tokens do not match: {int(is_image.sum())} image tokens "
                     f"in input_ids, {n_feat} features from image_sizes={sizes.tolist()}")
  taps = np.zeros(ids.shape + (TAPS,), np.int32)
  weights = np.zeros(ids.shape + (TAPS,), np.float32)
  if per_image:
    taps[is_image] = np.concatenate([t for t, _ in per_image])
    weights[is_image] = np.concatenate([w for _, w in per_image])
  out["feature_index"] = np.where(is_image, taps[..., 0], -1).astype(np.int32)
  out["feature_taps"], out["feature_weights"] = taps, weights
  out["tile_valid"] = valid
  out["tile_image"] = np.repeat(np.arange(len(sizes)), slots).astype(np.int32)
  rows_of_tokens = np.nonzero(is_image)[0]
  lengths = [len(t) for t, _ in per_image]
  first = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int)
  out["image_rows"] = rows_of_tokens[first].astype(np.int32) if lengths else np.zeros((0,), np.int32)
  return out


def token_groups(cfg: LlavaOnevisionConfig, prepared: dict, sample_groups, media_only: bool = False) -> dict:
  """Group id of every token each probe module sees; -1 = not counted.

  sample_groups int[B] (e.g. domain of each row, -1 to skip a row). Returns
  {'llm': int32[B, T], 'vision': int32[N, P], 'projector': int32[N, P]}: padding never counts,
  nor padded tile slots; `media_only` keeps only image-token positions in the LLM.
  """
  return llava_next.tiled_token_groups(prepared, sample_groups, media_only, patches=cfg.vision.num_patches,
                                       class_tokens=0)  # SigLIP has no class token


def hf_rules(cfg: LlavaOnevisionConfig):
  """Param path <- HF name, accepting both layouts (hub/v5-saved 'language_model.model.*',
  'vision_tower.vision_model.*' and in-memory v5 'model.language_model.*', 'model.vision_tower.*')."""
  return llava_next.llava_rules(cfg, tower_rules=siglip.hf_rules)


# -- the family checklist (models/registry.py CHECKLIST, docs/ADDING_A_FAMILY.md) ----------------
NAME = "llava_onevision"
Config = LlavaOnevisionConfig
Module = LlavaOnevision
PROBE_MODULES = ("llm", "vision", "projector")
IGNORE = ()
# MINER stage-1 id sets of the real LLaVA-OneVision (Qwen2) tokenizer: <image>, <video>.
TOKEN_IDS = {"special_ids": (), "image_ids": (151646,), "video_ids": (151647,), "audio_ids": ()}


def init_inputs(cfg: LlavaOnevisionConfig, tokens: int = 8) -> tuple[tuple, dict]:
  """Dummy (args, kwargs) for `LlavaOnevision.init` (e.g. under jax.eval_shape): one tile, no image
  token (LLaVA-NeXT's, plus all-zero taps and weights)."""
  args, kwargs = llava_next.init_inputs(cfg, tokens)
  kwargs.update(feature_taps=jnp.zeros((1, tokens, TAPS), jnp.int32),
                feature_weights=jnp.zeros((1, tokens, TAPS), jnp.float32))
  return args, kwargs
