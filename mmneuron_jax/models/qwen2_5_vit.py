"""Qwen2.5-VL vision transformer (HF `Qwen2_5_VisionTransformerPretrainedModel`), scanned layers.

Qwen2-VL's tower (`qwen2_vit`: the processor's patch order, 2-D axial rope, the PatchMerger) with
RMSNorm pre-norms, a SwiGLU MLP with biases (neuron = act(gate_proj(x)), before the product), and
window attention: most blocks attend within windows of `window_size` pixels (whole merge blocks),
the blocks in `fullatt_block_indexes` within the frame.

HF permutes the patches into window order (`window_index`), runs the blocks on contiguous windows
and un-permutes the merger output. The blocks are permutation-equivariant (rope angles travel with
their patches; the permutation moves whole merge blocks), so running in the processor's order with
a block-diagonal window mask gives the same numbers; the neurons then come back in the processor's
order, `[1, N]`, as Qwen2-VL's (HF's hooks see them in window order, `window_order` maps one to the
other).
"""
import dataclasses

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from mmneuron_jax.convert import hf_config
from mmneuron_jax.convert.checks import reject_unsupported
from mmneuron_jax.models.qwen2_vit import PatchGeometry, embed_patches, merge_patches, vision_cos_sin, vit_rules
from mmneuron_jax.nn.attention import mask_to_bias
from mmneuron_jax.nn.layers import ACTIVATIONS, RMSNorm
from mmneuron_jax.nn.mlp import GatedMLP
from mmneuron_jax.nn.neuron_aux import neuron_aux
from mmneuron_jax.nn.policy import Policy
from mmneuron_jax.nn.qkv_attention import FusedQKVAttention

NORM_EPS = 1e-6  # HF hard-codes eps=1e-6 for norm1, norm2 and merger.ln_q

HF_FIELDS = ("model_type", "depth", "hidden_size", "hidden_act", "intermediate_size", "num_heads", "in_channels",
             "in_chans", "patch_size", "spatial_patch_size", "spatial_merge_size", "temporal_patch_size",
             "tokens_per_second", "window_size", "out_hidden_size", "fullatt_block_indexes", "rope_parameters")


@dataclasses.dataclass(frozen=True)
class Qwen25VisionConfig(PatchGeometry):
  embed_dim: int  # HF `hidden_size`
  depth: int
  num_heads: int
  intermediate_size: int
  out_size: int  # the merger's output width (= the LLM's hidden size; HF `out_hidden_size`)
  patch_size: int = 14
  temporal_patch_size: int = 2
  spatial_merge_size: int = 2
  in_channels: int = 3
  hidden_act: str = "silu"
  rope_theta: float = 10000.0
  window_size: int = 112  # pixels
  fullatt_block_indexes: tuple[int, ...] = (7, 15, 23, 31)
  tokens_per_second: float = 4  # M-RoPE temporal steps per second of video (the decoder's positions)

  @property
  def merge_window(self) -> int:
    """Window side in merged tokens (HF `vit_merger_window_size`)."""
    return self.window_size // self.spatial_merge_size // self.patch_size

  @property
  def full_attention(self) -> np.ndarray:
    """bool[depth]: which blocks attend over the whole frame (indexes past the depth name none, as in HF)."""
    return np.isin(np.arange(self.depth), self.fullatt_block_indexes)

  @classmethod
  def from_hf(cls, c: dict, where: str = "vision_config", defaults: dict | None = None) -> "Qwen25VisionConfig":
    """From HF `vision_config` (hub layout: `in_chans`, `spatial_patch_size`; v5: `in_channels`,
    `rope_parameters`), `convert.hf_config.fill`ed, with its class `defaults` (None: filled here)."""
    if defaults is None:
      c, defaults = hf_config.fill_as(c, "Qwen2_5_VLVisionConfig", where)
    hf_config.check_fields(c, defaults, HF_FIELDS, where)
    patch = c.get("patch_size", 14)
    channels = c.get("in_channels", 3)
    rope = dict(c.get("rope_parameters") or {})
    embed, heads, merge = c.get("hidden_size", 3584), c.get("num_heads", 16), c.get("spatial_merge_size", 2)
    window, depth = c.get("window_size", 112), c.get("depth", 32)
    full = tuple(int(i) for i in c.get("fullatt_block_indexes", (7, 15, 23, 31)))
    reject_unsupported(where, {
        "model_type": (c.get("model_type", "qwen2_5_vl_vision"), {"qwen2_5_vl", "qwen2_5_vl_vision"}),
        "hidden_act": (c.get("hidden_act", "silu"), set(ACTIVATIONS)),
        "rope_type": (rope.get("rope_type", "axial"), {"axial"}),
        "type(patch_size)": (type(patch).__name__, {"int"}),
        "type(temporal_patch_size)": (type(c.get("temporal_patch_size", 2)).__name__, {"int"}),
        "spatial_patch_size": (c.get("spatial_patch_size", patch), {patch}),
        "in_chans": (c.get("in_chans", channels), {channels}),
        "hidden_size % (4 * num_heads)": (embed % (4 * heads), {0}),
        "window_size >= spatial_merge_size * patch_size": (window >= merge * patch, {True}),
    })
    return cls(embed_dim=embed, depth=depth, num_heads=heads, intermediate_size=c.get("intermediate_size", 3420),
               out_size=c.get("out_hidden_size", 3584), patch_size=patch,
               temporal_patch_size=c.get("temporal_patch_size", 2), spatial_merge_size=merge, in_channels=channels,
               hidden_act=c.get("hidden_act", "silu"), rope_theta=float(rope.get("rope_theta", 10000.0)),
               window_size=window, fullatt_block_indexes=full, tokens_per_second=c.get("tokens_per_second", 4))


# -- host-side index arithmetic (numpy) -----------------------------------------------------

def patch_windows(grid_thw, merge: int, merge_window: int) -> np.ndarray:
  """Attention window of every patch in the processor's order: int32[N] (ids count up over frames).

  A frame's merged tokens (h/merge x w/merge) are tiled by merge_window x merge_window windows from
  the top-left (the last row / column of windows may be partial), as HF's `get_vision_window_index`.
  """
  out, next_id = [], 0
  for t, h, w in np.asarray(grid_thw, np.int64).reshape(-1, 3):
    gh, gw = h // merge, w // merge
    nw = -(-gw // merge_window)
    hh, ww = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    win = ((hh // merge_window) * nw + ww // merge_window).reshape(-1)  # one per merge block, row-major
    per_frame = -(-gh // merge_window) * nw
    for f in range(t):
      out.append(np.repeat(win + next_id + f * per_frame, merge * merge))
    next_id += t * per_frame
  return np.concatenate(out).astype(np.int32) if out else np.zeros((0,), np.int32)


def window_order(grid_thw, merge: int, merge_window: int) -> np.ndarray:
  """HF's patch order: int64[N] indices into the processor's order (HF `window_index` expanded
  from merge blocks to patches). `x_hf = x[window_order(...)]`."""
  windows = patch_windows(grid_thw, merge, merge_window)
  blocks = np.argsort(windows[::merge * merge], kind="stable")
  return (blocks[:, None] * merge * merge + np.arange(merge * merge)).reshape(-1)


# -- modules ------------------------------------------------------------------------------

class VisionBlock(nn.Module):
  """x + attn(norm1(x)); x + mlp(norm2(x)), attention within the layer's segments (window or
  frame). Returns (x, aux) with probes / captured neurons."""
  cfg: Qwen25VisionConfig
  policy: Policy = Policy()
  capture: bool = False

  @nn.compact
  def __call__(self, x, xs, ctx):
    c, p = self.cfg, self.policy
    segments = jnp.where(xs["full"], ctx["frames"], ctx["windows"])
    bias = mask_to_bias(segments[:, None] == segments[None, :])[None]
    h = RMSNorm(eps=NORM_EPS, policy=p, name="norm1")(x)
    attn = FusedQKVAttention(num_heads=c.num_heads, qkv_bias=True, policy=p, name="attn")
    x = x + attn(h, bias, ctx["cos"], ctx["sin"])
    h = RMSNorm(eps=NORM_EPS, policy=p, name="norm2")(x)
    mlp = GatedMLP(hidden=c.intermediate_size, act=c.hidden_act, use_bias=True, policy=p, name="mlp")
    y, neurons = mlp(h, xs.get("mask"))
    x = x + y
    return x, neuron_aux(neurons, ctx.get("probe"), self.capture)


class Qwen25VisionTransformer(nn.Module):
  """pixel_values float[N, C*Tp*p*p] -> (merged features float[N / m**2, out_size], aux).

  positions int[N, 2] (`qwen2_vit.patch_positions`), segments int[N] (frames,
  `qwen2_vit.patch_segments`), windows int[N] (`patch_windows`); mask float[L, F]; probe: a probe
  over `[1, N]` tokens. aux['neurons'] float[L, 1, N, F].
  Params: patch_embed [C*Tp*p*p, D], layers.* [L, ...], merger_norm, merger.{fc1, fc2}.
  """
  cfg: Qwen25VisionConfig
  policy: Policy = Policy()
  capture: bool = False

  @nn.compact
  def __call__(self, pixel_values, positions, segments, windows, mask=None, probe=None):
    c, p = self.cfg, self.policy
    x = embed_patches(self, pixel_values)
    cos, sin = vision_cos_sin(positions, c.head_dim, c.rope_theta)
    xs = {"full": jnp.asarray(c.full_attention)}
    if mask is not None:
      xs["mask"] = mask
    scanned = nn.scan(VisionBlock, variable_axes={"params": 0}, split_rngs={"params": True},
                      in_axes=(0, nn.broadcast), length=c.depth)
    ctx = {"frames": segments, "windows": windows, "cos": cos, "sin": sin, "probe": probe}
    x, aux = scanned(c, p, self.capture, name="layers")(x, xs, ctx)
    return merge_patches(self, RMSNorm(eps=NORM_EPS, policy=p, name="merger_norm"), x), aux


def hf_rules(cfg: Qwen25VisionConfig, prefixes=("visual.", "model.visual.")):
  """Declarative map for the vision tower; prefixes: alternatives for HF's 'visual.' (hub and
  v5-saved checkpoints) / 'model.visual.' (v5 in-memory names)."""
  mlp = {("mlp", "gate"): "mlp.gate_proj", ("mlp", "up"): "mlp.up_proj", ("mlp", "down"): "mlp.down_proj"}
  return vit_rules(cfg, prefixes, mlp, {"scale": "weight"})
