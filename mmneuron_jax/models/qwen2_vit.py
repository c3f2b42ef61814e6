"""Qwen2-VL vision transformer (HF `Qwen2VisionTransformerPretrainedModel`), scanned layers.

All patches of all images form one token sequence `[N, C*Tp*p*p]` (the HF processor's
`pixel_values`, patches already in spatial-merge block order). Attention is block-diagonal:
a patch attends only to patches of its own frame (`segments`, HF's `cu_seqlens`), so images
of different grid sizes share one batch. 2-D rotary embedding over each patch's (row, col);
LayerNorm pre-norm blocks with a fused qkv; the PatchMerger (ln_q, then an MLP over
`spatial_merge_size**2` concatenated neighbours) maps to the LLM width.

The probe token layout is `[1, N]`: neurons come back as `float[L, 1, N, F]`.
"""
import dataclasses

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from mmneuron_jax.convert import hf_config
from mmneuron_jax.convert.checks import reject_unsupported
from mmneuron_jax.convert.mapping import Rule
from mmneuron_jax.convert.transforms import transpose
from mmneuron_jax.nn.attention import mask_to_bias
from mmneuron_jax.nn.layers import ACTIVATIONS, LayerNorm
from mmneuron_jax.nn.mlp import MLP
from mmneuron_jax.nn.neuron_aux import neuron_aux
from mmneuron_jax.nn.policy import Policy
from mmneuron_jax.nn.qkv_attention import FusedQKVAttention
from mmneuron_jax.nn.rope import rope_cos_sin

LN_EPS = 1e-6  # HF hard-codes eps=1e-6 for norm1, norm2 and merger.ln_q


HF_FIELDS = ("model_type", "depth", "embed_dim", "num_heads", "mlp_ratio", "hidden_size", "patch_size",
             "spatial_patch_size", "temporal_patch_size", "spatial_merge_size", "in_channels", "in_chans",
             "hidden_act", "rope_parameters")


class PatchGeometry:
  """The derived sizes of a Qwen ViT config (`embed_dim`, `num_heads`, `in_channels`,
  `temporal_patch_size`, `patch_size`); shared by Qwen2-VL's and Qwen2.5-VL's."""

  @property
  def patch_dim(self) -> int:
    """Width of one flattened patch: C * Tp * p * p."""
    return self.in_channels * self.temporal_patch_size * self.patch_size ** 2

  @property
  def head_dim(self) -> int:
    return self.embed_dim // self.num_heads


@dataclasses.dataclass(frozen=True)
class Qwen2VisionConfig(PatchGeometry):
  embed_dim: int
  depth: int
  num_heads: int
  intermediate_size: int
  out_size: int  # the merger's output width (= the LLM's hidden size; HF `hidden_size`)
  patch_size: int = 14
  temporal_patch_size: int = 2
  spatial_merge_size: int = 2
  in_channels: int = 3
  hidden_act: str = "quick_gelu"
  rope_theta: float = 10000.0

  @classmethod
  def from_hf(cls, c: dict, where: str = "vision_config", defaults: dict | None = None) -> "Qwen2VisionConfig":
    """From HF `vision_config` (hub layout: `in_chans`, no rope fields; v5: `in_channels`,
    `rope_parameters`), `convert.hf_config.fill`ed, with its class `defaults` (None: filled here)."""
    if defaults is None:
      c, defaults = hf_config.fill_as(c, "Qwen2VLVisionConfig", where)
    hf_config.check_fields(c, defaults, HF_FIELDS, where)
    if c.get("spatial_patch_size", c.get("patch_size")) != c.get("patch_size", 14):
      reject_unsupported(where, {"spatial_patch_size": (c["spatial_patch_size"], {c.get("patch_size", 14)})})
    rope = dict(c.get("rope_parameters") or {})
    embed, heads = c.get("embed_dim", 1280), c.get("num_heads", 16)
    reject_unsupported(where, {
        "model_type": (c.get("model_type", "qwen2_vl_vision"), {"qwen2_vl", "qwen2_vl_vision"}),
        "hidden_act": (c.get("hidden_act", "quick_gelu"), set(ACTIVATIONS)),
        "rope_type": (rope.get("rope_type", "axial"), {"axial"}),
        "type(patch_size)": (type(c.get("patch_size", 14)).__name__, {"int"}),
        "type(temporal_patch_size)": (type(c.get("temporal_patch_size", 2)).__name__, {"int"}),
        "embed_dim % (4 * num_heads)": (embed % (4 * heads), {0}),
    })
    return cls(embed_dim=embed, depth=c.get("depth", 32), num_heads=heads,
               intermediate_size=int(embed * c.get("mlp_ratio", 4)), out_size=c.get("hidden_size", 3584),
               patch_size=c.get("patch_size", 14), temporal_patch_size=c.get("temporal_patch_size", 2),
               spatial_merge_size=c.get("spatial_merge_size", 2),
               in_channels=c.get("in_channels", c.get("in_chans", 3)), hidden_act=c.get("hidden_act", "quick_gelu"),
               rope_theta=float(rope.get("rope_theta", 10000.0)))


# -- host-side index arithmetic (numpy) -----------------------------------------------------

def patch_positions(grid_thw, merge: int) -> np.ndarray:
  """(row, col) of every patch in the processor's order. grid_thw int[I, 3] -> int32[N, 2].

  Within a frame, patches run over merge x merge blocks (block-major), as HF's
  `get_vision_position_ids`; frames of a video repeat the frame's coordinates.
  """
  out = []
  for t, h, w in np.asarray(grid_thw, np.int64).reshape(-1, 3):
    if h % merge or w % merge:
      raise ValueError(f"image_grid_thw ({t}, {h}, {w}) is not divisible by spatial_merge_size={merge}")
    hh, ww = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    block = lambda a: a.reshape(h // merge, merge, w // merge, merge).transpose(0, 2, 1, 3).reshape(-1)
    out.append(np.tile(np.stack([block(hh), block(ww)], -1), (t, 1)))
  return np.concatenate(out).astype(np.int32) if out else np.zeros((0, 2), np.int32)


def patch_segments(grid_thw) -> np.ndarray:
  """Attention segment (one per frame of each image, HF's cu_seqlens) of every patch: int32[N]."""
  sizes = [h * w for t, h, w in np.asarray(grid_thw, np.int64).reshape(-1, 3) for _ in range(t)]
  return np.repeat(np.arange(len(sizes)), sizes).astype(np.int32)


def patch_images(grid_thw) -> np.ndarray:
  """Image index of every patch: int32[N]."""
  grid = np.asarray(grid_thw, np.int64).reshape(-1, 3)
  return np.repeat(np.arange(len(grid)), grid.prod(-1)).astype(np.int32)


# -- modules ------------------------------------------------------------------------------

def vision_cos_sin(positions, head_dim: int, theta: float):
  """positions int[N, 2] (row, col) -> (cos, sin) float32[1, N, head_dim].

  HF's axial rope: frequencies over head_dim // 2 applied to rows, then the same to columns,
  i.e. M-RoPE with two streams of head_dim // 4 frequencies each.
  """
  quarter = head_dim // 4
  inv = 1.0 / (theta ** (np.arange(0, head_dim // 2, 2, dtype=np.float32) / (head_dim // 2)))
  inv = jnp.asarray(np.concatenate([inv, inv]), jnp.float32)
  return rope_cos_sin(jnp.moveaxis(positions, -1, 0)[:, None], inv, (quarter, quarter))


class VisionBlock(nn.Module):
  """x + attn(norm1(x)); x + mlp(norm2(x)). Returns (x, aux) with probes / captured neurons."""
  cfg: Qwen2VisionConfig
  policy: Policy = Policy()
  capture: bool = False

  @nn.compact
  def __call__(self, x, xs, ctx):
    c, p = self.cfg, self.policy
    h = LayerNorm(eps=LN_EPS, policy=p, name="norm1")(x)
    # fused qkv (with bias) -> 2-D rope -> attention under the block-diagonal bias float32[1, N, N] -> proj
    attn = FusedQKVAttention(num_heads=c.num_heads, qkv_bias=True, policy=p, name="attn")
    x = x + attn(h, ctx["bias"], ctx["cos"], ctx["sin"])
    h = LayerNorm(eps=LN_EPS, policy=p, name="norm2")(x)
    mlp = MLP(hidden=c.intermediate_size, act=c.hidden_act, use_bias=True, policy=p, name="mlp")
    y, neurons = mlp(h, xs.get("mask"))
    x = x + y
    return x, neuron_aux(neurons, ctx.get("probe"), self.capture)


class Qwen2VisionTransformer(nn.Module):
  """pixel_values float[N, C*Tp*p*p] -> (merged features float[N / m**2, out_size], aux).

  positions int[N, 2] (`patch_positions`), segments int[N] (`patch_segments`);
  mask float[L, F]; probe: a probe over `[1, N]` tokens. aux['neurons'] float[L, 1, N, F].
  Params: patch_embed [C*Tp*p*p, D], layers.* [L, ...], merger_norm, merger.{fc1, fc2}.
  """
  cfg: Qwen2VisionConfig
  policy: Policy = Policy()
  capture: bool = False

  @nn.compact
  def __call__(self, pixel_values, positions, segments, mask=None, probe=None):
    c, p = self.cfg, self.policy
    x = embed_patches(self, pixel_values)
    cos, sin = vision_cos_sin(positions, c.head_dim, c.rope_theta)
    bias = mask_to_bias(segments[:, None] == segments[None, :])[None]
    xs = {} if mask is None else {"mask": mask}
    scanned = nn.scan(VisionBlock, variable_axes={"params": 0}, split_rngs={"params": True},
                      in_axes=(0, nn.broadcast), length=c.depth)
    x, aux = scanned(c, p, self.capture, name="layers")(x, xs, {"bias": bias, "cos": cos, "sin": sin,
                                                                 "probe": probe})
    return merge_patches(self, LayerNorm(eps=LN_EPS, policy=p, name="merger_norm"), x), aux


def embed_patches(tower: nn.Module, pixel_values):
  """A Qwen ViT's patch embedding (param `patch_embed` [C*Tp*p*p, D] of `tower`, made inside its
  compact call): pixel_values float[N, C*Tp*p*p] -> float[1, N, D]."""
  c, p = tower.cfg, tower.policy
  kernel = tower.param("patch_embed", nn.initializers.normal(0.02), (c.patch_dim, c.embed_dim), p.param)
  x = jnp.einsum("np,pd->nd", pixel_values.astype(p.compute), kernel.astype(p.compute), precision=p.precision)
  return x[None]


def merge_patches(tower: nn.Module, norm: nn.Module, x):
  """A Qwen ViT's PatchMerger (`norm`, then MLP `merger` of `tower` over spatial_merge_size**2
  neighbours): x float[1, N, D] -> float[N / m**2, out_size]."""
  c, p = tower.cfg, tower.policy
  m2 = c.spatial_merge_size ** 2
  h = norm(x[0]).reshape(-1, m2 * c.embed_dim)
  merger = MLP(hidden=m2 * c.embed_dim, act="gelu", out_features=c.out_size, use_bias=True, policy=p, name="merger")
  merged, _ = merger(h)
  return merged


def conv3d_to_dense(w):
  """torch Conv3d weight [D, C, Tp, p, p] (stride = kernel) -> dense kernel [C*Tp*p*p, D]."""
  return np.transpose(np.reshape(w, (w.shape[0], -1)))


def hf_rules(cfg: Qwen2VisionConfig, prefixes=("visual.", "model.visual.")):
  """Declarative map for the vision tower; prefixes: alternatives for HF's 'visual.' (hub and
  v5-saved checkpoints) / 'model.visual.' (v5 in-memory names)."""
  return vit_rules(cfg, prefixes, {("mlp", "fc1"): "mlp.fc1", ("mlp", "fc2"): "mlp.fc2"},
                   {"scale": "weight", "bias": "bias"})


def vit_rules(cfg, prefixes, mlp: dict, norm_params: dict):
  """`hf_rules` of a Qwen ViT: patch embed, fused qkv + proj and the `mlp` linears {our path: HF
  name} (kernels and biases), norm1 / norm2 / merger.ln_q params {ours: HF's}, the merger MLP."""
  L = cfg.depth

  def alt(name):
    return tuple(p + name for p in prefixes)

  rules = [Rule(("patch_embed",), alt("patch_embed.proj.weight"), conv3d_to_dense)]
  linears = {("attn", "qkv"): "attn.qkv", ("attn", "proj"): "attn.proj", **mlp}
  for path, name in linears.items():
    rules.append(Rule(("layers",) + path + ("kernel",), alt(f"blocks.{{i}}.{name}.weight"), transpose, L))
    rules.append(Rule(("layers",) + path + ("bias",), alt(f"blocks.{{i}}.{name}.bias"), None, L))
  for norm in ("norm1", "norm2"):
    for ours, theirs in norm_params.items():
      rules.append(Rule(("layers", norm, ours), alt(f"blocks.{{i}}.{norm}.{theirs}"), None, L))
  rules += [Rule(("merger_norm", ours), alt(f"merger.ln_q.{theirs}")) for ours, theirs in norm_params.items()]
  for ours, theirs in (("fc1", "0"), ("fc2", "2")):
    rules.append(Rule(("merger", ours, "kernel"), alt(f"merger.mlp.{theirs}.weight"), transpose))
    rules.append(Rule(("merger", ours, "bias"), alt(f"merger.mlp.{theirs}.bias")))
  return rules
