"""SigLIP vision tower (ViT with tanh-GELU, pre-LN, no class token). All layers run; per-layer
outputs come back. The encoder layer is CLIP's (`clip.EncoderLayer`): the same block."""
import dataclasses

import flax.linen as nn

from mmneuron_jax.convert import hf_config
from mmneuron_jax.convert.checks import reject_unsupported
from mmneuron_jax.convert.mapping import Rule
from mmneuron_jax.convert.transforms import conv_to_hwio
from mmneuron_jax.models.clip import EncoderLayer, encoder_layer_rules, patch_embed
from mmneuron_jax.nn.layers import LayerNorm
from mmneuron_jax.nn.policy import Policy

HF_FIELDS = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
             "image_size", "patch_size", "num_channels", "layer_norm_eps", "hidden_act", "vision_use_head")


@dataclasses.dataclass(frozen=True)
class SiglipConfig:
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  image_size: int
  patch_size: int
  num_channels: int = 3
  layer_norm_eps: float = 1e-6
  hidden_act: str = "gelu_pytorch_tanh"

  @property
  def num_patches(self) -> int:
    return (self.image_size // self.patch_size) ** 2

  @classmethod
  def from_hf(cls, c: dict, where: str = "vision_config", defaults: dict | None = None) -> "SiglipConfig":
    """From a `convert.hf_config.fill`ed SigLIP vision config and its class `defaults` (None: filled here)."""
    if defaults is None:
      c, defaults = hf_config.fill_as(c, "SiglipVisionConfig", where)
    hf_config.check_fields(c, defaults, HF_FIELDS, where)
    reject_unsupported(where, {
        "model_type": (c.get("model_type", "siglip_vision_model"), {"siglip_vision_model"}),
        "hidden_act": (c.get("hidden_act", "gelu_pytorch_tanh"), {"gelu_pytorch_tanh", "gelu"}),
        # the attention-pooling head feeds only the pooled output, which no MLLM here reads
        "vision_use_head": (bool(c.get("vision_use_head", True)), {False}),
        "image_size (int)": (isinstance(c["image_size"], int) and isinstance(c["patch_size"], int), {True}),
    })
    return cls(hidden_size=c["hidden_size"], intermediate_size=c["intermediate_size"],
               num_layers=c["num_hidden_layers"], num_heads=c["num_attention_heads"],
               image_size=c["image_size"], patch_size=c["patch_size"],
               num_channels=c.get("num_channels", 3), layer_norm_eps=c.get("layer_norm_eps", 1e-6),
               hidden_act=c.get("hidden_act", "gelu_pytorch_tanh"))


class SiglipTower(nn.Module):
  """pixel_values float[N, C, H, W] (NCHW, as HF) -> (last hidden float[N, P, D], aux stacked over layers).

  aux['hidden'] float[L, N, P, D] holds each layer's output (HF hidden_states[1:]; the last is
  before post_layernorm, as HF's `hidden_states[-1]`); neurons are `act(fc1(x))`.
  """
  cfg: SiglipConfig
  policy: Policy = Policy()
  capture: bool = False

  @nn.compact
  def __call__(self, pixel_values, mask=None, probe=None):
    c, p = self.cfg, self.policy
    kernel = self.param("patch_embed", nn.initializers.normal(0.02),
                        (c.patch_size, c.patch_size, c.num_channels, c.hidden_size), p.param)
    bias = self.param("patch_bias", nn.initializers.zeros, (c.hidden_size,), p.param)
    x = patch_embed(pixel_values, kernel, c.image_size, p) + bias.astype(p.compute)
    pos = self.param("position_embedding", nn.initializers.normal(0.02), (c.num_patches, c.hidden_size), p.param)
    x = x + pos.astype(x.dtype)[None]
    xs = {} if mask is None else {"mask": mask}
    scanned = nn.scan(EncoderLayer, variable_axes={"params": 0}, split_rngs={"params": True},
                      in_axes=(0, nn.broadcast), length=c.num_layers)
    x, aux = scanned(c, p, self.capture, name="layers")(x, xs, {"probe": probe})
    # HF keeps post_layernorm in the checkpoint (the pooled / last_hidden_state output): hold it too.
    LayerNorm(eps=c.layer_norm_eps, policy=p, name="post_norm")(x[:, :1])
    return x, aux


def hf_rules(cfg: SiglipConfig, prefixes):
  """Declarative map for the SigLIP vision tower; prefixes are the alternatives for
  'vision_tower.vision_model.' (hub checkpoints) / 'vision_tower.' (transformers v5)."""
  L = cfg.num_layers

  def alt(name):
    return tuple(p + name for p in prefixes)

  rules = [
      Rule(("patch_embed",), alt("embeddings.patch_embedding.weight"), conv_to_hwio),
      Rule(("patch_bias",), alt("embeddings.patch_embedding.bias")),
      Rule(("position_embedding",), alt("embeddings.position_embedding.weight")),
      Rule(("post_norm", "scale"), alt("post_layernorm.weight")),
      Rule(("post_norm", "bias"), alt("post_layernorm.bias")),
  ]
  return rules + encoder_layer_rules(L, alt)
