"""EVA ViT as InstructBLIP / BLIP-2 use it (HF `InstructBlipVisionModel`).

Class token + learned positions + patch conv (with bias); pre-norm layers (`layer_norm1/2`) with
a fused qkv projection whose bias is HF's `cat(q_bias, 0, v_bias)`, a GELU MLP, and
`post_layernorm` on the output the Q-Former reads. Layers are stacked `[L, ...]` under `nn.scan`;
each returns `(x, aux)` with probe results / captured neurons (neuron = act(fc1(x))).
"""
import dataclasses

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from mmneuron_jax.convert import hf_config
from mmneuron_jax.convert.checks import reject_unsupported
from mmneuron_jax.convert.mapping import Rule
from mmneuron_jax.convert.transforms import conv_to_hwio, transpose
from mmneuron_jax.models.clip import patch_embed
from mmneuron_jax.nn.layers import ACTIVATIONS, LayerNorm
from mmneuron_jax.nn.mlp import MLP
from mmneuron_jax.nn.neuron_aux import neuron_aux
from mmneuron_jax.nn.policy import Policy
from mmneuron_jax.nn.qkv_attention import FusedQKVAttention


def _square(value, field, where):
  """HF allows int or (h, w) for image/patch size; we support square only."""
  if isinstance(value, (list, tuple)):
    if len(value) != 2 or value[0] != value[1]:
      reject_unsupported(where, {field: (tuple(value), {"an int or a square (s, s)"})})
    value = value[0]
  return int(value)


HF_FIELDS = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
             "image_size", "patch_size", "num_channels", "layer_norm_eps", "hidden_act", "qkv_bias")


@dataclasses.dataclass(frozen=True)
class EvaConfig:
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  image_size: int
  patch_size: int
  num_channels: int = 3
  layer_norm_eps: float = 1e-6
  hidden_act: str = "gelu"
  qkv_bias: bool = True

  @property
  def num_patches(self) -> int:
    return (self.image_size // self.patch_size) ** 2

  @classmethod
  def from_hf(cls, c: dict, where: str = "vision_config", defaults: dict | None = None) -> "EvaConfig":
    """From a `convert.hf_config.fill`ed InstructBLIP vision config and its class `defaults`
    (None: filled here)."""
    if defaults is None:
      c, defaults = hf_config.fill_as(c, "InstructBlipVisionConfig", where)
    hf_config.check_fields(c, defaults, HF_FIELDS, where)
    reject_unsupported(where, {
        "model_type": (c.get("model_type", "instructblip_vision_model"), {"instructblip_vision_model"}),
        "hidden_act": (c.get("hidden_act", "gelu"), set(ACTIVATIONS)),
    })
    if c["hidden_size"] % c["num_attention_heads"]:
      raise ValueError(f"{where}: hidden_size={c['hidden_size']} is not divisible by "
                       f"num_attention_heads={c['num_attention_heads']}")
    return cls(hidden_size=c["hidden_size"], intermediate_size=c["intermediate_size"],
               num_layers=c["num_hidden_layers"], num_heads=c["num_attention_heads"],
               image_size=_square(c.get("image_size", 224), "image_size", where),
               patch_size=_square(c.get("patch_size", 14), "patch_size", where),
               num_channels=c.get("num_channels", 3), layer_norm_eps=c.get("layer_norm_eps", 1e-6),
               hidden_act=c.get("hidden_act", "gelu"), qkv_bias=bool(c.get("qkv_bias", True)))


class EvaLayer(nn.Module):
  """x + attn(ln1(x)); x + mlp(ln2(x)). Returns (x, aux) with probes / captured neurons."""
  cfg: EvaConfig
  policy: Policy = Policy()
  capture: bool = False

  @nn.compact
  def __call__(self, x, xs, ctx):
    """x float[N, T, D]; xs {'mask': float[F]} (per layer); ctx {'probe': probe or None}."""
    c, p = self.cfg, self.policy
    h = LayerNorm(eps=c.layer_norm_eps, policy=p, name="ln1")(x)
    x = x + FusedQKVAttention(num_heads=c.num_heads, qkv_bias=c.qkv_bias, policy=p, name="attn")(h)
    h = LayerNorm(eps=c.layer_norm_eps, policy=p, name="ln2")(x)
    mlp = MLP(hidden=c.intermediate_size, act=c.hidden_act, use_bias=True, policy=p, name="mlp")
    y, neurons = mlp(h, xs.get("mask"))
    x = x + y
    return x, neuron_aux(neurons, ctx.get("probe"), self.capture)


class EvaVisionTower(nn.Module):
  """pixel_values float[N, C, H, W] (NCHW, as HF) -> (post-normed float[N, 1 + P, D], aux [L, ...]).

  aux['neurons'] float[L, N, 1 + P, F] when capturing; aux['probe'] the stacked probe results.
  """
  cfg: EvaConfig
  policy: Policy = Policy()
  capture: bool = False

  @nn.compact
  def __call__(self, pixel_values, mask=None, probe=None):
    c, p = self.cfg, self.policy
    n = pixel_values.shape[0]
    kernel = self.param("patch_embed", nn.initializers.normal(0.02),
                        (c.patch_size, c.patch_size, c.num_channels, c.hidden_size), p.param)
    patch_bias = self.param("patch_bias", nn.initializers.zeros, (c.hidden_size,), p.param)
    x = patch_embed(pixel_values, kernel, c.image_size, p)
    x = x + patch_bias.astype(x.dtype)
    cls = self.param("class_embedding", nn.initializers.normal(0.02), (c.hidden_size,), p.param)
    pos = self.param("position_embedding", nn.initializers.normal(0.02), (c.num_patches + 1, c.hidden_size),
                     p.param)
    x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (n, 1, c.hidden_size)), x], axis=1)
    x = x + pos.astype(x.dtype)[None]
    xs = {} if mask is None else {"mask": mask}
    scanned = nn.scan(EvaLayer, variable_axes={"params": 0}, split_rngs={"params": True},
                      in_axes=(0, nn.broadcast), length=c.num_layers)
    x, aux = scanned(c, p, self.capture, name="layers")(x, xs, {"probe": probe})
    return LayerNorm(eps=c.layer_norm_eps, policy=p, name="post_norm")(x), aux


# -- conversion ----------------------------------------------------------------------------

def unbatch(x):
  """HF parameter with a leading batch axis of 1 ([1, P, D]) -> [P, D]."""
  if x.shape[0] != 1:
    raise ValueError(f"expected a leading axis of size 1, got shape {x.shape}")
  return x[0]


def flatten(x):
  """[1, 1, D] -> [D] (class embedding)."""
  return np.reshape(x, (-1,))


def qkv_bias(*xs):
  """Fused bias [3D] as saved by transformers, or LAVIS-style (q_bias [D], v_bias [D]) ->
  cat(q_bias, zeros, v_bias) [3D], which is how HF builds it."""
  if len(xs) == 1:
    return xs[0]
  q, v = xs
  return np.concatenate([q, np.zeros_like(q), v])


def hf_rules(cfg: EvaConfig, prefix: str = "vision_model."):
  """Declarative map: our param path <- HF name(s) under `prefix`."""
  L = cfg.num_layers
  layer = prefix + "encoder.layers.{i}."
  rules = [
      Rule(("patch_embed",), prefix + "embeddings.patch_embedding.weight", conv_to_hwio),
      Rule(("patch_bias",), prefix + "embeddings.patch_embedding.bias"),
      Rule(("class_embedding",), prefix + "embeddings.class_embedding", flatten),
      Rule(("position_embedding",), prefix + "embeddings.position_embedding", unbatch),
      Rule(("post_norm", "scale"), prefix + "post_layernorm.weight"),
      Rule(("post_norm", "bias"), prefix + "post_layernorm.bias"),
  ]
  linears = {("attn", "qkv"): "self_attn.qkv", ("attn", "proj"): "self_attn.projection",
             ("mlp", "fc1"): "mlp.fc1", ("mlp", "fc2"): "mlp.fc2"}
  for path, name in linears.items():
    rules.append(Rule(("layers",) + path + ("kernel",), layer + f"{name}.weight", transpose, L))
    if path != ("attn", "qkv"):
      rules.append(Rule(("layers",) + path + ("bias",), layer + f"{name}.bias", None, L))
  if cfg.qkv_bias:
    rules.append(Rule(("layers", "attn", "qkv", "bias"),
                      (layer + "self_attn.qkv.bias", [layer + "self_attn.q_bias", layer + "self_attn.v_bias"]),
                      qkv_bias, L))
  for ours, theirs in (("ln1", "layer_norm1"), ("ln2", "layer_norm2")):
    rules.append(Rule(("layers", ours, "scale"), layer + f"{theirs}.weight", None, L))
    rules.append(Rule(("layers", ours, "bias"), layer + f"{theirs}.bias", None, L))
  return rules
