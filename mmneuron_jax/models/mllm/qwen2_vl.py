"""Qwen2-VL: Qwen2-VL ViT (+ PatchMerger) -> merged image features spliced into a Qwen2
decoder with M-RoPE (3-D positions: temporal / height / width).

Probe modules: `llm` (decoder MLPs, neuron = silu(gate_proj(x))), `vision` (ViT MLPs, neuron =
act(fc1(x)), quick-GELU; token layout `[1, N_patches]`: the images' patches, then the videos').
Images and videos (`pixel_values_videos`, `video_grid_thw`; each frame pair one temporal patch)
may share a batch and a row; `prepare` lays them out as HF does.
"""
import dataclasses
import itertools

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from mmneuron_jax.convert import hf_config
from mmneuron_jax.convert.checks import reject_unsupported
from mmneuron_jax.models import llama, qwen2_vit
from mmneuron_jax.models.llama import DecoderConfig
from mmneuron_jax.models.qwen2_vit import Qwen2VisionConfig, Qwen2VisionTransformer
from mmneuron_jax.nn.policy import Policy

HF_FIELDS = ("model_type", "image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id",
             "tie_word_embeddings")
HF_IGNORED = ("vision_token_id",)  # a tokenizer id the model never reads
TOKEN_FIELDS = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
TEXT, IMAGE, VIDEO = 0, 1, 2  # HF mm_token_type_ids values
MEDIA = {IMAGE: ("image", "image_grid_thw"), VIDEO: ("video", "video_grid_thw")}  # type -> (name, grid field)

# MINER stage-1 id sets of the real Qwen2-VL tokenizer (<|im_start|>, <|im_end|>, <|vision_start|>,
# <|vision_end|>; <|image_pad|>; <|video_pad|>): `analysis.miner.token_modality_masks(ids, TOKEN_IDS)`.
TOKEN_IDS = {"special_ids": (151644, 151645, 151652, 151653), "image_ids": (151655,), "video_ids": (151656,),
             "audio_ids": ()}


@dataclasses.dataclass(frozen=True)
class Qwen2VLConfig:
  text: DecoderConfig
  vision: Qwen2VisionConfig
  image_token_id: int = 151655
  video_token_id: int = 151656
  vision_start_token_id: int = 151652
  vision_end_token_id: int = 151653

  @classmethod
  def from_hf(cls, c: dict, where: str = "config.json") -> "Qwen2VLConfig":
    """From a HF Qwen2-VL config: hub layout (text fields at the top level, `rope_scaling`
    {'type': 'mrope'}) or transformers-v5 layout (`text_config` with `rope_parameters`); read as HF
    reads it, with HF's class defaults filled in; unknown non-default fields raise."""
    return config_from_hf(cls, c, where, text_types=("qwen2_vl", "qwen2_vl_text"), vision_cls=Qwen2VisionConfig,
                          out_field="hidden_size")

  @property
  def probe_modules(self) -> dict[str, tuple[int, int]]:
    return vl_probe_modules(self)


def config_from_hf(cls, c: dict, where: str, *, text_types, vision_cls, out_field: str):
  """`cls(text=..., vision=..., <TOKEN_FIELDS>)` from a Qwen VL config.json (`text_and_vision`)."""
  c, decoder, vision = text_and_vision(c, where, text_types=text_types, vision_cls=vision_cls, out_field=out_field)
  return cls(text=decoder, vision=vision, **{k: c[k] for k in TOKEN_FIELDS})


def vl_probe_modules(cfg) -> dict[str, tuple[int, int]]:
  """(layers, neurons) of the `llm` and `vision` probe modules of a Qwen VL config."""
  return {"llm": (cfg.text.num_layers, cfg.text.intermediate_size),
          "vision": (cfg.vision.depth, cfg.vision.intermediate_size)}


def text_and_vision(c: dict, where: str, *, text_types, vision_cls, out_field: str):
  """A Qwen VL config.json (hub layout: text fields at the top level; or a v5 `text_config`) ->
  (filled config, DecoderConfig, vision_cls config); shared by the Qwen-VL families. The text model
  must be one of `text_types`; it is parsed as Qwen2-VL's (same layers, biases and M-RoPE).
  out_field: the vision config's field that must equal the text hidden size (named in the error)."""
  c, defaults = hf_config.fill(c, where)
  if "text_config" in c:  # transformers >= 4.53: a text sub-config
    hf_config.check_fields(c, defaults, HF_FIELDS, where, HF_IGNORED)
    text, text_defaults = hf_config.sub_config(c, defaults, "text_config")
    text_where, flat = f"{where}: text_config", ()
  else:  # older transformers: text fields at the top level
    text = {k: v for k, v in c.items() if k != "vision_config"}
    text_defaults, text_where, flat = defaults, where, HF_FIELDS + HF_IGNORED
  heads = text["num_attention_heads"]
  reject_unsupported(where, {
      "text_config.model_type": (text.get("model_type"), set(text_types)),
      "text_config.head_dim": (text.get("head_dim"), {None, text["hidden_size"] // heads}),
  })
  tie = bool(c.get("tie_word_embeddings", False) or text.get("tie_word_embeddings", False))
  text = dict(text, tie_word_embeddings=tie, model_type="qwen2_vl_text")
  text_defaults = dict(text_defaults, model_type="qwen2_vl_text")
  decoder = DecoderConfig.from_hf(text, text_where, allow_mrope=True, defaults=text_defaults, ignored=flat)
  if decoder.mrope_section is None or len(decoder.mrope_section) != 3:
    reject_unsupported(where, {"text_config.rope.mrope_section": (decoder.mrope_section, {"3 ints"})})
  vision_c, vision_defaults = hf_config.sub_config(c, defaults, "vision_config")
  vision = vision_cls.from_hf(vision_c, f"{where}: vision_config", defaults=vision_defaults)
  if vision.out_size != decoder.hidden_size:
    raise ValueError(f"{where}: vision_config.{out_field}={vision.out_size} must equal the text hidden_size "
                     f"{decoder.hidden_size}")
  return c, decoder, vision


class Qwen2VL(nn.Module):
  """Full model. `capture`: module names whose neurons come back in aux[name]['neurons']."""
  cfg: Qwen2VLConfig
  policy: Policy = Policy()
  capture: tuple[str, ...] = ()
  return_kv: bool = False
  remat: bool = False
  extra_inputs = ("pixel_values", "feature_index", "vision_positions", "vision_segments")
  generation_keeps_position_ids = True  # generate.py: prefill with the prepared M-RoPE positions

  @nn.compact
  def __call__(self, input_ids, positions, attn_mask, *, pixel_values=None, feature_index=None, vision_positions=None,
               vision_segments=None, masks=None, probe=None, lens=None, cache=None, cache_index=None):
    """input_ids int[B, T]; positions int[3, B, T] (or int[B, T], used on all three streams);
    pixel_values float[N, C*Tp*p*p] (the images' then the videos' patches); feature_index int32[B, T];
    vision_positions int[N, 2]; vision_segments int[N] (see `prepare`).

    Returns (logits float32[B, T, V], aux {'llm': ..., 'vision': ...}).
    """
    c, p = self.cfg, self.policy
    masks, probe = masks or {}, probe or {}
    if positions.ndim == 2:
      positions = jnp.broadcast_to(positions[None], (3,) + positions.shape)
    aux, features = {}, None
    if pixel_values is not None:
      vision = Qwen2VisionTransformer(cfg=c.vision, policy=p, capture="vision" in self.capture, name="vision")
      features, aux["vision"] = vision(
          pixel_values, vision_positions, vision_segments, masks.get("vision"), probe.get("vision"))
    logits, aux["llm"] = llama.decode(self, input_ids, positions, attn_mask, features=features,
                                      feature_index=feature_index, masks=masks, probe=probe, lens=lens, cache=cache,
                                      cache_index=cache_index)
    return logits, aux


def init_inputs(cfg: Qwen2VLConfig, tokens: int = 8) -> tuple[tuple, dict]:
  """Dummy (args, kwargs) for `Qwen2VL.init` (e.g. under jax.eval_shape): one 2x2-patch image."""
  m = cfg.vision.spatial_merge_size
  n = m * m
  ids = jnp.zeros((1, tokens), jnp.int32)
  bias = jnp.zeros((1, tokens, tokens), jnp.float32)
  grid = np.array([[1, m, m]])
  kwargs = dict(pixel_values=jnp.zeros((n, cfg.vision.patch_dim), jnp.float32),
                feature_index=jnp.full((1, tokens), -1, jnp.int32).at[0, 0].set(0),
                vision_positions=jnp.asarray(qwen2_vit.patch_positions(grid, m)),
                vision_segments=jnp.asarray(qwen2_vit.patch_segments(grid)))
  return (ids, jnp.zeros((3, 1, tokens), jnp.int32), bias), kwargs


# -- host-side preparation (numpy) ----------------------------------------------------------

def token_types(cfg: Qwen2VLConfig, input_ids) -> np.ndarray:
  """HF `mm_token_type_ids` from ids: 1 at image tokens, 2 at video tokens, else 0. int32[B, T]."""
  ids = np.asarray(input_ids)
  return np.where(ids == cfg.image_token_id, IMAGE, np.where(ids == cfg.video_token_id, VIDEO, TEXT)).astype(np.int32)


def _runs(types):
  """Maximal runs of equal values: [(value, start, end)]."""
  out, start = [], 0
  for key, group in itertools.groupby(types.tolist()):
    n = len(list(group))
    out.append((key, start, start + n))
    start += n
  return out


def image_position_ids(grid_thw, start: int, merge: int) -> np.ndarray:
  """3-D positions of one image's (or video's) merged tokens, offset by `start`: int64[3, t*h*w/merge**2].

  The temporal stream counts the video's temporal patches (Qwen2-VL: one step per patch, no fps scaling)."""
  t, h, w = (int(v) for v in grid_thw)
  tt, hh, ww = np.meshgrid(np.arange(t), np.arange(h // merge), np.arange(w // merge), indexing="ij")
  return np.stack([tt, hh, ww]).reshape(3, -1) + start


def rope_index(cfg: Qwen2VLConfig, input_ids, mm_types, image_grid_thw=None, video_grid_thw=None,
               attention_mask=None):
  """HF `get_rope_index` on the host -> (position_ids int32[3, B, T], rope_deltas int32[B],
  {IMAGE: int32[I], VIDEO: int32[V]} the batch row of each image / video).

  Over each row's valid tokens (attention_mask 1): text runs count up by one on all three
  streams; an image (video) run takes the next row of `image_grid_thw` (`video_grid_thw`), in
  batch order, and gets its (t, h, w) grid positions offset by the current position, which then
  advances by max(h, w) / merge (not by t). Padded positions get 0.
  rope_deltas = max position + 1 - valid length (HF's decode offset).
  """
  grids = {IMAGE: _grid(image_grid_thw), VIDEO: _grid(video_grid_thw)}
  merge = cfg.vision.spatial_merge_size
  pos, deltas, rows = media_rope_index(input_ids, mm_types, grids, attention_mask, merge,
                                       lambda key, k, start: image_position_ids(grids[key][k], start, merge))
  for key, (name, field) in MEDIA.items():
    if len(rows[key]) != len(grids[key]):
      raise ValueError(f"{field} has {len(grids[key])} {name}s but input_ids holds {len(rows[key])} "
                       f"{name}-token spans")
  return pos.astype(np.int32), deltas.astype(np.int32), {k: np.asarray(v, np.int32) for k, v in rows.items()}


def media_rope_index(input_ids, mm_types, grids: dict, attention_mask, merge: int, place):
  """The walk of HF `get_rope_index` shared by the Qwen VL families -> (position_ids int64[3, B, T],
  rope_deltas int64[B], {IMAGE: [row, ...], VIDEO: [...]} the batch row of each medium used).

  grids {IMAGE: int64[I, 3], VIDEO: int64[V, 3]}; place(key, k, start) -> int64[3, n]: the positions
  of the k-th medium of type `key`, offset by `start`. See `rope_index`.
  """
  ids = np.asarray(input_ids)
  types = np.asarray(mm_types)
  am = np.ones_like(ids, bool) if attention_mask is None else np.asarray(attention_mask).astype(bool)
  pos = np.zeros((3,) + ids.shape, np.int64)
  deltas, rows = np.zeros(ids.shape[0], np.int64), {IMAGE: [], VIDEO: []}
  for b in range(ids.shape[0]):
    chunks, cur = [], 0
    for key, start, end in _runs(types[b][am[b]]):
      if key == TEXT:
        chunks.append(np.broadcast_to(np.arange(end - start) + cur, (3, end - start)))
        cur += end - start
        continue
      name, field = MEDIA[key]
      used, grid = len(rows[key]), grids[key]
      if used >= len(grid):
        raise ValueError(f"input_ids has more {name}-token spans than {field} has rows ({len(grid)})")
      vis = place(key, used, cur)
      if vis.shape[1] != end - start:
        raise ValueError(f"input_ids row {b}: a {name}-token span of {end - start} tokens does not match "
                         f"{field}[{used}]={grid[used].tolist()} ({vis.shape[1]} tokens); adjacent {name}s "
                         f"need tokens between them (<|vision_end|><|vision_start|>)")
      chunks.append(vis)
      rows[key].append(b)
      cur += int(max(grid[used][1], grid[used][2])) // merge
    if chunks:
      llm = np.concatenate(chunks, axis=1)
      pos[:, b, am[b]] = llm
      deltas[b] = llm.max() + 1 - am[b].sum()
  return pos, deltas, rows


def _grid(grid_thw) -> np.ndarray:
  return np.zeros((0, 3), np.int64) if grid_thw is None else np.asarray(grid_thw, np.int64).reshape(-1, 3)


def _patches(cfg: Qwen2VLConfig, batch: dict, pixels: str, field: str) -> tuple:
  """(float32[N, C*Tp*p*p] patches, int64[K, 3] grid) of one medium, shapes checked; empty when absent."""
  v = cfg.vision
  if batch.get(pixels) is None:
    return np.zeros((0, v.patch_dim), np.float32), _grid(None)
  if batch.get(field) is None:
    raise ValueError(f"batch has {pixels} but no {field} (Qwen2-VL needs both)")
  pix, grid = np.asarray(batch[pixels], np.float32), _grid(batch[field])
  n = int(grid.prod(-1).sum())
  if pix.ndim != 2 or pix.shape != (n, v.patch_dim):
    raise ValueError(f"{pixels} has shape {pix.shape}; {field} {grid.tolist()} needs ({n}, {v.patch_dim}) "
                     f"(patches x C*temporal_patch_size*patch_size**2)")
  return pix, grid


def _splice_index(ids, token_id: int, offset: int, n_features: int, name: str, field: str, grid) -> np.ndarray:
  """Feature row of every `token_id` position (offset + its rank in row-major order), else -1: int32[B, T]."""
  hit = ids == token_id
  if hit.sum() != n_features:
    raise ValueError(f"input_ids holds {int(hit.sum())} {name} tokens ({token_id}); {field} {grid.tolist()} "
                     f"gives {n_features} merged features")
  return np.where(hit, offset + np.cumsum(hit.reshape(-1)).reshape(ids.shape) - 1, -1).astype(np.int32)


def prepare(cfg: Qwen2VLConfig, batch: dict) -> dict:
  """Host-side: HF processor outputs -> arrays for the jitted forward.

  Needs `input_ids` and, per medium present, `pixel_values` float[N_i, C*Tp*p*p] + `image_grid_thw`
  int[I, 3] and/or `pixel_values_videos` float[N_v, C*Tp*p*p] + `video_grid_thw` int[V, 3] (uses
  `attention_mask`, `mm_token_type_ids` when given). Images and videos run through the vision
  tower as one patch sequence, images first (attention never crosses a frame, so this equals
  HF's two calls). Sets `pixel_values` float32[N_i + N_v, C*Tp*p*p] to that sequence and adds
  `feature_index` int32[B, T] (image tokens take merged rows 0.., video tokens the rows after the
  images'), `position_ids` int32[3, B, T] (M-RoPE, unless given), `rope_deltas` int32[B],
  `vision_positions` int32[N, 2], `vision_segments` int32[N], `patch_image` int32[N] (the medium
  of each patch: images 0..I-1, then videos I..I+V-1) and `image_rows` int32[I + V] (the batch
  row of each medium, same order).
  """
  out = dict(batch)
  if "feature_index" in batch or (batch.get("pixel_values") is None and batch.get("pixel_values_videos") is None):
    return out  # prepared already / text only
  v = cfg.vision
  images, image_grid = _patches(cfg, batch, "pixel_values", "image_grid_thw")
  videos, video_grid = _patches(cfg, batch, "pixel_values_videos", "video_grid_thw")
  ids = np.asarray(batch["input_ids"])
  types = batch.get("mm_token_type_ids")
  types = token_types(cfg, ids) if types is None else np.asarray(types)
  if types.shape != ids.shape:
    raise ValueError(f"mm_token_type_ids has shape {types.shape}, input_ids {ids.shape}")
  positions, deltas, rows = rope_index(cfg, ids, types, image_grid, video_grid, batch.get("attention_mask"))
  m2 = v.spatial_merge_size ** 2
  n_image = len(images) // m2
  image_index = _splice_index(ids, cfg.image_token_id, 0, n_image, "image", "image_grid_thw", image_grid)
  video_index = _splice_index(ids, cfg.video_token_id, n_image, len(videos) // m2, "video", "video_grid_thw",
                              video_grid)
  grid = np.concatenate([image_grid, video_grid])
  out["pixel_values"] = np.concatenate([images, videos])
  out["feature_index"] = np.maximum(image_index, video_index)
  if out.get("position_ids") is None:
    out["position_ids"] = positions
  out["rope_deltas"] = deltas
  out["vision_positions"] = qwen2_vit.patch_positions(grid, v.spatial_merge_size)
  out["vision_segments"] = qwen2_vit.patch_segments(grid)
  out["patch_image"] = qwen2_vit.patch_images(grid)
  out["image_rows"] = np.concatenate([rows[IMAGE], rows[VIDEO]]).astype(np.int32)
  return out


def token_groups(cfg: Qwen2VLConfig, prepared: dict, sample_groups, media_only: bool = False) -> dict:
  """Group id of every token each probe module sees; -1 = not counted.

  sample_groups int[B] (e.g. domain of each row, -1 to skip a row). Returns
  {'llm': int32[B, T], 'vision': int32[1, N]}: padding never counts; `media_only` keeps only
  image- and video-token positions in the LLM. Vision patches (images', then videos') take
  their medium's row group.
  """
  sample_groups = np.asarray(sample_groups, np.int32)
  ids = np.asarray(prepared["input_ids"])
  am = np.asarray(prepared.get("attention_mask", np.ones_like(ids))).astype(bool)
  if media_only:
    keep = am & (np.asarray(prepared["feature_index"]) >= 0) if "feature_index" in prepared else np.zeros_like(am)
  else:
    keep = am
  out = {"llm": np.where(keep, sample_groups[:, None], -1).astype(np.int32)}
  if "patch_image" in prepared:
    out["vision"] = sample_groups[prepared["image_rows"][prepared["patch_image"]]][None].astype(np.int32)
  return out


def hf_rules(cfg: Qwen2VLConfig):
  """Param path <- HF name, accepting both layouts (hub / v5-saved 'model.layers.*', 'visual.*'
  and v5 in-memory 'model.language_model.*', 'model.visual.*'); 'lm_head.weight' unless tied."""
  return vl_hf_rules(cfg, qwen2_vit.hf_rules)


def vl_hf_rules(cfg, vision_rules):
  """`hf_rules` of a Qwen VL family: the Qwen2 decoder under 'llm', `vision_rules(cfg.vision,
  prefixes)` (its ViT's map) under 'vision'."""

  def nest(prefix, rules):
    return [dataclasses.replace(r, path=(prefix,) + r.path) for r in rules]

  rules = nest("llm", llama.hf_rules(cfg.text, ("model.language_model.", "model."), ("lm_head.",)))
  rules += nest("vision", vision_rules(cfg.vision, ("visual.", "model.visual.")))
  return rules


# -- the family checklist (models/registry.py CHECKLIST, docs/ADDING_A_FAMILY.md) ----------------
NAME = "qwen2_vl"
Config = Qwen2VLConfig
Module = Qwen2VL
PROBE_MODULES = ("llm", "vision")
# A tied checkpoint may still hold a copy of the embedding as lm_head.weight; HF discards it too.
IGNORE = (r"^lm_head\.weight$",)
