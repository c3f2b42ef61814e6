"""Qwen2.5-VL: Qwen2.5-VL ViT (window attention, SwiGLU, RMSNorm; + PatchMerger) -> merged image /
video features spliced into a Qwen2 decoder with M-RoPE (3-D positions: temporal / height / width).

Probe modules: `llm` (decoder MLPs, neuron = silu(gate_proj(x))), `vision` (ViT MLPs, neuron =
act(gate_proj(x)), before the gate product; token layout `[1, N_patches]` in the processor's order:
the images' patches, then the videos'). As Qwen2-VL (`qwen2_vl`, whose host-side layout this family
shares) except the ViT and the video positions: a video's temporal M-RoPE stream steps by
`tokens_per_second * second_per_grid_ts[v]` per temporal patch (absolute time), truncated to int.
"""
import dataclasses

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from mmneuron_jax.models import llama, qwen2_5_vit
from mmneuron_jax.models.llama import DecoderConfig
from mmneuron_jax.models.mllm import qwen2_vl
from mmneuron_jax.models.mllm.qwen2_vl import IMAGE, VIDEO
from mmneuron_jax.models.qwen2_5_vit import Qwen25VisionConfig, Qwen25VisionTransformer
from mmneuron_jax.nn.policy import Policy

TEXT_TYPES = ("qwen2_5_vl", "qwen2_5_vl_text")  # a Qwen2-VL text decoder (Qwen2 + M-RoPE)

# The Qwen2-VL tokenizer's ids (Qwen2.5-VL keeps them): `analysis.miner.token_modality_masks(ids, TOKEN_IDS)`.
TOKEN_IDS = qwen2_vl.TOKEN_IDS


@dataclasses.dataclass(frozen=True)
class Qwen25VLConfig:
  text: DecoderConfig
  vision: Qwen25VisionConfig
  image_token_id: int = 151655
  video_token_id: int = 151656
  vision_start_token_id: int = 151652
  vision_end_token_id: int = 151653

  @classmethod
  def from_hf(cls, c: dict, where: str = "config.json") -> "Qwen25VLConfig":
    """From a HF Qwen2.5-VL config: hub layout (text fields at the top level, `rope_scaling`
    {'type': 'mrope'}) or transformers-v5 layout (`text_config` with `rope_parameters`); read as HF
    reads it, with HF's class defaults filled in; unknown non-default fields raise."""
    return qwen2_vl.config_from_hf(cls, c, where, text_types=TEXT_TYPES, vision_cls=Qwen25VisionConfig,
                                   out_field="out_hidden_size")

  @property
  def probe_modules(self) -> dict[str, tuple[int, int]]:
    return qwen2_vl.vl_probe_modules(self)


class Qwen25VL(nn.Module):
  """Full model. `capture`: module names whose neurons come back in aux[name]['neurons']."""
  cfg: Qwen25VLConfig
  policy: Policy = Policy()
  capture: tuple[str, ...] = ()
  return_kv: bool = False
  remat: bool = False
  extra_inputs = ("pixel_values", "feature_index", "vision_positions", "vision_segments", "vision_windows")
  generation_keeps_position_ids = True  # generate.py: prefill with the prepared M-RoPE positions

  @nn.compact
  def __call__(self, input_ids, positions, attn_mask, *, pixel_values=None, feature_index=None, vision_positions=None,
               vision_segments=None, vision_windows=None, masks=None, probe=None, lens=None, cache=None,
               cache_index=None):
    """input_ids int[B, T]; positions int[3, B, T] (or int[B, T], used on all three streams);
    pixel_values float[N, C*Tp*p*p] (the images' then the videos' patches); feature_index int32[B, T];
    vision_positions int[N, 2]; vision_segments int[N] (frames); vision_windows int[N] (see `prepare`).

    Returns (logits float32[B, T, V], aux {'llm': ..., 'vision': ...}).
    """
    c, p = self.cfg, self.policy
    masks, probe = masks or {}, probe or {}
    if positions.ndim == 2:
      positions = jnp.broadcast_to(positions[None], (3,) + positions.shape)
    aux, features = {}, None
    if pixel_values is not None:
      vision = Qwen25VisionTransformer(cfg=c.vision, policy=p, capture="vision" in self.capture, name="vision")
      features, aux["vision"] = vision(pixel_values, vision_positions, vision_segments, vision_windows,
                                       masks.get("vision"), probe.get("vision"))
    logits, aux["llm"] = llama.decode(self, input_ids, positions, attn_mask, features=features,
                                      feature_index=feature_index, masks=masks, probe=probe, lens=lens, cache=cache,
                                      cache_index=cache_index)
    return logits, aux


def init_inputs(cfg: Qwen25VLConfig, tokens: int = 8) -> tuple[tuple, dict]:
  """Dummy (args, kwargs) for `Qwen25VL.init` (e.g. under jax.eval_shape): one 2x2-patch image."""
  args, kwargs = qwen2_vl.init_inputs(cfg, tokens)
  m = cfg.vision.spatial_merge_size
  kwargs["vision_windows"] = jnp.asarray(qwen2_5_vit.patch_windows(np.array([[1, m, m]]), m, cfg.vision.merge_window))
  return args, kwargs


# -- host-side preparation (numpy) ----------------------------------------------------------

def video_position_ids(grid_thw, start: int, merge: int, interval) -> np.ndarray:
  """3-D positions of one video's merged tokens: int64[3, t*h*w/merge**2]; the temporal stream is
  start + int(k * interval) for temporal patch k (float32 arithmetic, truncated, as HF)."""
  pos = qwen2_vl.image_position_ids(grid_thw, start, merge)
  t = int(grid_thw[0])
  steps = (np.arange(t, dtype=np.float32) * np.float32(interval)).astype(np.int64)
  pos[0] = np.repeat(steps, pos.shape[1] // t) + start
  return pos


def rope_index(cfg: Qwen25VLConfig, input_ids, mm_types, image_grid_thw=None, video_grid_thw=None,
               second_per_grid_ts=None, attention_mask=None):
  """HF Qwen2.5-VL `get_rope_index` on the host -> (position_ids int32[3, B, T], rope_deltas int32[B]).

  As `qwen2_vl.rope_index`, except a video's temporal positions step by tokens_per_second *
  second_per_grid_ts[v] (videos in batch order; 1 s per temporal patch when not given).
  """
  grids = {IMAGE: qwen2_vl._grid(image_grid_thw), VIDEO: qwen2_vl._grid(video_grid_thw)}
  seconds = np.ones(len(grids[VIDEO]), np.float32) if second_per_grid_ts is None else \
      np.asarray(second_per_grid_ts, np.float32).reshape(-1)
  if len(seconds) != len(grids[VIDEO]):
    raise ValueError(f"second_per_grid_ts has {len(seconds)} entries but video_grid_thw {len(grids[VIDEO])} videos")
  merge = cfg.vision.spatial_merge_size

  def place(key, k, start):
    if key == VIDEO:
      return video_position_ids(grids[VIDEO][k], start, merge, np.float32(cfg.vision.tokens_per_second) * seconds[k])
    return qwen2_vl.image_position_ids(grids[key][k], start, merge)

  pos, deltas, _ = qwen2_vl.media_rope_index(input_ids, mm_types, grids, attention_mask, merge, place)
  return pos.astype(np.int32), deltas.astype(np.int32)


def prepare(cfg: Qwen25VLConfig, batch: dict) -> dict:
  """Host-side: HF processor outputs -> arrays for the jitted forward.

  `qwen2_vl.prepare` (same keys in and out: the patch sequence, `feature_index`, `vision_positions`,
  `vision_segments`, `patch_image`, `image_rows`), with this family's M-RoPE `position_ids` (unless
  given) and `rope_deltas` (reads `second_per_grid_ts` float[V] when given), and `vision_windows`
  int32[N] (the attention window of every patch, `qwen2_5_vit.patch_windows`).
  """
  if "feature_index" in batch or (batch.get("pixel_values") is None and batch.get("pixel_values_videos") is None):
    return dict(batch)  # prepared already / text only
  ids = np.asarray(batch["input_ids"])
  types = batch.get("mm_token_type_ids")
  types = qwen2_vl.token_types(cfg, ids) if types is None else np.asarray(types)
  image_grid = qwen2_vl._grid(batch.get("image_grid_thw") if batch.get("pixel_values") is not None else None)
  video_grid = qwen2_vl._grid(batch.get("video_grid_thw") if batch.get("pixel_values_videos") is not None else None)
  out = qwen2_vl.prepare(cfg, batch)  # checks shapes and spans; Qwen2-VL's positions are replaced below
  positions, deltas = rope_index(cfg, ids, types, image_grid, video_grid, batch.get("second_per_grid_ts"),
                                 batch.get("attention_mask"))
  if batch.get("position_ids") is None:
    out["position_ids"] = positions
  out["rope_deltas"] = deltas
  v = cfg.vision
  out["vision_windows"] = qwen2_5_vit.patch_windows(np.concatenate([image_grid, video_grid]), v.spatial_merge_size,
                                                    v.merge_window)
  return out


token_groups = qwen2_vl.token_groups  # the same token layout (`[B, T]` decoder, `[1, N]` patches)


def hf_rules(cfg: Qwen25VLConfig):
  """Param path <- HF name, accepting both layouts (hub / v5-saved 'model.layers.*', 'visual.*'
  and v5 in-memory 'model.language_model.*', 'model.visual.*'); 'lm_head.weight' unless tied."""
  return qwen2_vl.vl_hf_rules(cfg, qwen2_5_vit.hf_rules)


# -- the family checklist (models/registry.py CHECKLIST, docs/ADDING_A_FAMILY.md) ----------------
NAME = "qwen2_5_vl"
Config = Qwen25VLConfig
Module = Qwen25VL
PROBE_MODULES = ("llm", "vision")
# A tied checkpoint may still hold a copy of the embedding as lm_head.weight; HF discards it too.
IGNORE = (r"^lm_head\.weight$",)
