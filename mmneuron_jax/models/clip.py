"""CLIP vision tower (ViT with quick-GELU, pre-LN). All layers run; per-layer outputs come back."""
import dataclasses

import flax.linen as nn
import jax.numpy as jnp

from mmneuron_jax.convert import hf_config
from mmneuron_jax.convert.checks import reject_unsupported
from mmneuron_jax.convert.mapping import Rule
from mmneuron_jax.convert.transforms import conv_to_hwio, transpose
from mmneuron_jax.nn.attention import SelfAttention
from mmneuron_jax.nn.layers import LayerNorm
from mmneuron_jax.nn.mlp import MLP
from mmneuron_jax.nn.neuron_aux import neuron_aux
from mmneuron_jax.nn.policy import Policy


HF_FIELDS = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
             "image_size", "patch_size", "num_channels", "layer_norm_eps", "hidden_act")


@dataclasses.dataclass(frozen=True)
class VisionConfig:
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  image_size: int
  patch_size: int
  num_channels: int = 3
  layer_norm_eps: float = 1e-5
  hidden_act: str = "quick_gelu"

  @property
  def num_patches(self) -> int:
    return (self.image_size // self.patch_size) ** 2

  @classmethod
  def from_hf(cls, c: dict, where: str = "vision_config", defaults: dict | None = None) -> "VisionConfig":
    """From a `convert.hf_config.fill`ed CLIP vision config and its class `defaults` (None: filled here)."""
    if defaults is None:
      c, defaults = hf_config.fill_as(c, "CLIPVisionConfig", where)
    # projection_dim: only CLIPVisionModelWithProjection's head; vocab_size: a legacy field HF never reads.
    hf_config.check_fields(c, defaults, HF_FIELDS, where, ("projection_dim", "vocab_size"))
    reject_unsupported(where, {
        "model_type": (c.get("model_type", "clip_vision_model"), {"clip_vision_model"}),
        "hidden_act": (c.get("hidden_act", "quick_gelu"), {"quick_gelu", "gelu"}),
    })
    return cls(hidden_size=c["hidden_size"], intermediate_size=c["intermediate_size"],
               num_layers=c["num_hidden_layers"], num_heads=c["num_attention_heads"],
               image_size=c["image_size"], patch_size=c["patch_size"],
               num_channels=c.get("num_channels", 3), layer_norm_eps=c.get("layer_norm_eps", 1e-5),
               hidden_act=c.get("hidden_act", "quick_gelu"))


def patch_embed(pixel_values, kernel, image_size: int, policy: Policy):
  """The patch convolution (stride = patch size, no bias; pixels past the last whole patch dropped, as
  the conv does) of square images of `image_size`, refused at any other size (the towers here do no
  position interpolation): pixel_values float[N, C, S, S] (NCHW, as HF), kernel float[p, p, C, D]
  -> float[N, (S // p) ** 2, D]."""
  patch, ch = kernel.shape[0], kernel.shape[2]
  if tuple(pixel_values.shape[1:]) != (ch, image_size, image_size):
    raise ValueError(f"pixel_values has shape {tuple(pixel_values.shape)}; the vision tower takes "
                     f"[N, {ch}, {image_size}, {image_size}] (no position interpolation)")
  n, side = pixel_values.shape[0], image_size // patch
  x = jnp.transpose(pixel_values, (0, 2, 3, 1)).astype(policy.compute)[:, :side * patch, :side * patch]
  x = jnp.einsum("nhpwqc,pqcd->nhwd", x.reshape(n, side, patch, side, patch, ch), kernel.astype(policy.compute),
                 precision=policy.precision)
  return x.reshape(n, side * side, kernel.shape[-1])


class EncoderLayer(nn.Module):
  """x + attn(ln1(x)); x + mlp(ln2(x)). Returns (x, aux) with the layer output and probes."""
  cfg: VisionConfig
  policy: Policy = Policy()
  capture: bool = False

  @nn.compact
  def __call__(self, x, xs, ctx):
    c, p = self.cfg, self.policy
    b, t, d = x.shape
    h = LayerNorm(eps=c.layer_norm_eps, policy=p, name="ln1")(x)
    head_dim = d // c.num_heads
    attn, _ = SelfAttention(num_heads=c.num_heads, num_kv_heads=c.num_heads, head_dim=head_dim, qkv_bias=True,
                            out_bias=True, policy=p, name="attn")(h, None)
    x = x + attn
    h = LayerNorm(eps=c.layer_norm_eps, policy=p, name="ln2")(x)
    mlp = MLP(hidden=c.intermediate_size, act=c.hidden_act, use_bias=True, policy=p, name="mlp")
    y, neurons = mlp(h, xs.get("mask"))
    x = x + y
    return x, neuron_aux(neurons, ctx.get("probe"), self.capture, hidden=x)


class VisionTower(nn.Module):
  """pixel_values float[N, C, H, W] (NCHW, as HF) -> aux stacked over layers.

  aux['hidden'] float[L, N, 1 + P, D] holds each layer's output (HF hidden_states[1:]);
  `embeddings` (HF hidden_states[0]) is returned beside it.
  """
  cfg: VisionConfig
  policy: Policy = Policy()
  capture: bool = False

  @nn.compact
  def __call__(self, pixel_values, mask=None, probe=None):
    c, p = self.cfg, self.policy
    kernel = self.param("patch_embed", nn.initializers.normal(0.02),
                        (c.patch_size, c.patch_size, c.num_channels, c.hidden_size), p.param)
    x = patch_embed(pixel_values, kernel, c.image_size, p)
    cls = self.param("class_embedding", nn.initializers.normal(0.02), (c.hidden_size,), p.param)
    pos = self.param("position_embedding", nn.initializers.normal(0.02), (c.num_patches + 1, c.hidden_size),
                     p.param)
    x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (x.shape[0], 1, c.hidden_size)), x], axis=1)
    x = x + pos.astype(x.dtype)[None]
    x = LayerNorm(eps=c.layer_norm_eps, policy=p, name="pre_norm")(x)
    xs = {} if mask is None else {"mask": mask}
    scanned = nn.scan(EncoderLayer, variable_axes={"params": 0}, split_rngs={"params": True},
                      in_axes=(0, nn.broadcast), length=c.num_layers)
    _, aux = scanned(c, p, self.capture, name="layers")(x, xs, {"probe": probe})
    # HF keeps post_layernorm in the checkpoint (used only for the pooled output): hold it too.
    LayerNorm(eps=c.layer_norm_eps, policy=p, name="post_norm")(x[:, :1])
    return x, aux


def hf_rules(cfg: VisionConfig, prefixes):
  """Declarative map for the CLIP vision tower; prefixes are the alternatives for
  'vision_tower.vision_model.' (hub checkpoints) / 'vision_tower.' (transformers v5)."""
  L = cfg.num_layers

  def alt(name):
    return tuple(p + name for p in prefixes)

  rules = [
      Rule(("patch_embed",), alt("embeddings.patch_embedding.weight"), conv_to_hwio),
      Rule(("class_embedding",), alt("embeddings.class_embedding")),
      Rule(("position_embedding",), alt("embeddings.position_embedding.weight")),
      Rule(("pre_norm", "scale"), alt("pre_layrnorm.weight")), Rule(("pre_norm", "bias"), alt("pre_layrnorm.bias")),
      Rule(("post_norm", "scale"), alt("post_layernorm.weight")),
      Rule(("post_norm", "bias"), alt("post_layernorm.bias")),
  ]
  return rules + encoder_layer_rules(L, alt)


def encoder_layer_rules(num_layers: int, alt) -> list:
  """Rules of the stacked `EncoderLayer`s (CLIP's and SigLIP's HF encoders name them alike);
  alt(name) -> the alternative HF names of `name` under the tower's prefixes."""
  rules = []
  linears = {("attn", "q"): "self_attn.q_proj", ("attn", "k"): "self_attn.k_proj",
             ("attn", "v"): "self_attn.v_proj", ("attn", "o"): "self_attn.out_proj",
             ("mlp", "fc1"): "mlp.fc1", ("mlp", "fc2"): "mlp.fc2"}
  for path, name in linears.items():
    rules.append(Rule(("layers",) + path + ("kernel",), alt(f"encoder.layers.{{i}}.{name}.weight"), transpose,
                      num_layers))
    rules.append(Rule(("layers",) + path + ("bias",), alt(f"encoder.layers.{{i}}.{name}.bias"), None, num_layers))
  for ours, theirs in (("ln1", "layer_norm1"), ("ln2", "layer_norm2")):
    rules.append(Rule(("layers", ours, "scale"), alt(f"encoder.layers.{{i}}.{theirs}.weight"), None, num_layers))
    rules.append(Rule(("layers", ours, "bias"), alt(f"encoder.layers.{{i}}.{theirs}.bias"), None, num_layers))
  return rules
