"""Whisper-style audio encoder of Qwen2-Audio (HF `Qwen2AudioEncoder`), scanned layers.

log-mel `input_features` float[N, M, 2P] (one row per audio, padded to the full chunk) ->
conv1 (k3, p1) + GELU -> conv2 (k3, stride 2, p1) + GELU -> + learned positions [P, D] ->
pre-LN layers (attention with a key padding mask, GELU MLP) -> avg-pool (k2, s2) -> LayerNorm
-> float[N, P // 2, D]. The key padding mask is HF's: encoder frame j of audio n is a valid
key iff j < (frames_n - 1) // 2 + 1, frames_n = feature_attention_mask[n].sum(); padded
frames are still computed as queries.

Probe module `audio`: neuron = act(fc1(x)); token layout `[N, P]` (audio x encoder frame),
so neurons come back as `float[L, N, P, F]`.
"""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmneuron_jax.convert import hf_config
from mmneuron_jax.convert.checks import reject_unsupported
from mmneuron_jax.convert.mapping import Rule
from mmneuron_jax.convert.transforms import transpose
from mmneuron_jax.nn.attention import attend, mask_to_bias
from mmneuron_jax.nn.layers import ACTIVATIONS, Dense, LayerNorm, activation
from mmneuron_jax.nn.mlp import MLP
from mmneuron_jax.nn.neuron_aux import neuron_aux
from mmneuron_jax.nn.policy import Policy

LN_EPS = 1e-5  # torch.nn.LayerNorm default, which HF uses for every encoder norm


HF_FIELDS = ("model_type", "d_model", "encoder_layers", "encoder_attention_heads", "encoder_ffn_dim",
             "num_mel_bins", "max_source_positions", "activation_function", "scale_embedding")


@dataclasses.dataclass(frozen=True)
class AudioEncoderConfig:
  d_model: int = 1280
  num_layers: int = 32
  num_heads: int = 20
  ffn_dim: int = 5120
  num_mel_bins: int = 128
  max_source_positions: int = 1500
  hidden_act: str = "gelu"

  @property
  def num_frames(self) -> int:
    """Mel frames the encoder needs (HF checks it): 2 * max_source_positions."""
    return 2 * self.max_source_positions

  @classmethod
  def from_hf(cls, c: dict, where: str = "audio_config", defaults: dict | None = None) -> "AudioEncoderConfig":
    """From HF `audio_config`, `convert.hf_config.fill`ed, with its class `defaults` (None: filled here).

    `scale_embedding` is accepted either way: HF computes `embed_scale` but never applies it.
    """
    if defaults is None:
      c, defaults = hf_config.fill_as(c, "Qwen2AudioEncoderConfig", where)
    hf_config.check_fields(c, defaults, HF_FIELDS, where)
    d, heads = c.get("d_model", 1280), c.get("encoder_attention_heads", 20)
    reject_unsupported(where, {
        "model_type": (c.get("model_type", "qwen2_audio_encoder"), {"qwen2_audio_encoder"}),
        "activation_function": (c.get("activation_function", "gelu"), set(ACTIVATIONS)),
        "d_model % encoder_attention_heads": (d % heads, {0}),
    })
    return cls(d_model=d, num_layers=c.get("encoder_layers", 32), num_heads=heads,
               ffn_dim=c.get("encoder_ffn_dim", 5120), num_mel_bins=c.get("num_mel_bins", 128),
               max_source_positions=c.get("max_source_positions", 1500),
               hidden_act=c.get("activation_function", "gelu"))


def encoder_lengths(frames):
  """Valid mel frames int[N] -> (valid encoder frames, output tokens), HF's
  `_get_feat_extract_output_lengths`: (f - 1) // 2 + 1, then (e - 2) // 2 + 1. numpy or jnp."""
  enc = (frames - 1) // 2 + 1
  return enc, (enc - 2) // 2 + 1


def conv1d(x, kernel, bias, stride, precision):
  """x float[N, W, C], kernel float[3, C, D] (torch Conv1d weight reversed), padding 1 -> float[N, W', D]."""
  y = jax.lax.conv_general_dilated(x, kernel.astype(x.dtype), (stride,), [(1, 1)],
                                   dimension_numbers=("NWC", "WIO", "NWC"), precision=precision)
  return y + bias.astype(y.dtype)


class AudioAttention(nn.Module):
  """Whisper attention: q (bias), k (no bias), v (bias), out (bias); no rotary, no causality."""
  num_heads: int
  policy: Policy = Policy()

  @nn.compact
  def __call__(self, x, bias):
    """x float[N, P, D]; bias float32[N, 1, P] (key padding) -> float[N, P, D]."""
    n, t, d = x.shape
    p, hd = self.policy, d // self.num_heads
    split = lambda y: y.reshape(n, t, self.num_heads, hd)
    q = split(Dense(features=d, use_bias=True, policy=p, name="q")(x))
    k = split(Dense(features=d, use_bias=False, policy=p, name="k")(x))
    v = split(Dense(features=d, use_bias=True, policy=p, name="v")(x))
    out, _ = attend(q, k, v, bias, p.precision, p.attention)
    return Dense(features=d, use_bias=True, policy=p, name="o")(out)


class AudioEncoderLayer(nn.Module):
  """x + attn(ln1(x)); x + mlp(ln2(x)). Returns (x, aux) with probes / captured neurons."""
  cfg: AudioEncoderConfig
  policy: Policy = Policy()
  capture: bool = False

  @nn.compact
  def __call__(self, x, xs, ctx):
    c, p = self.cfg, self.policy
    h = LayerNorm(eps=LN_EPS, policy=p, name="ln1")(x)
    x = x + AudioAttention(num_heads=c.num_heads, policy=p, name="attn")(h, ctx["bias"])
    h = LayerNorm(eps=LN_EPS, policy=p, name="ln2")(x)
    mlp = MLP(hidden=c.ffn_dim, act=c.hidden_act, use_bias=True, policy=p, name="mlp")
    y, neurons = mlp(h, xs.get("mask"))
    x = x + y
    return x, neuron_aux(neurons, ctx.get("probe"), self.capture)


class AudioEncoder(nn.Module):
  """input_features float[N, M, 2P], frames int[N] valid mel frames -> (float[N, P // 2, D], aux).

  mask float[L, F]; probe: a probe over `[N, P]` tokens; aux['neurons'] float[L, N, P, F].
  Params: conv1/conv2 {kernel [3, C, D], bias}, embed_positions [P, D], layers.* [L, ...], final_norm.
  """
  cfg: AudioEncoderConfig
  policy: Policy = Policy()
  capture: bool = False

  @nn.compact
  def __call__(self, input_features, frames, mask=None, probe=None):
    c, p = self.cfg, self.policy
    d, m = c.d_model, c.num_mel_bins
    if input_features.shape[1:] != (m, c.num_frames):
      raise ValueError(f"input_features has shape {input_features.shape}; expected [N, {m}, {c.num_frames}] "
                       f"(num_mel_bins, 2 * max_source_positions)")
    gelu = activation("gelu")
    x = jnp.swapaxes(input_features, 1, 2).astype(p.compute)
    for name, width, stride in (("conv1", m, 1), ("conv2", d, 2)):
      kernel = self.param(f"{name}_kernel", nn.initializers.normal(0.02), (3, width, d), p.param)
      bias = self.param(f"{name}_bias", nn.initializers.zeros, (d,), p.param)
      x = gelu(conv1d(x, kernel, bias, stride, p.precision))
    pos = self.param("embed_positions", nn.initializers.normal(0.02), (c.max_source_positions, d), p.param)
    x = x + pos.astype(x.dtype)[None]
    valid, _ = encoder_lengths(frames)
    bias = mask_to_bias(jnp.arange(x.shape[1])[None, :] < valid[:, None])[:, None, :]
    xs = {} if mask is None else {"mask": mask}
    scanned = nn.scan(AudioEncoderLayer, variable_axes={"params": 0}, split_rngs={"params": True},
                      in_axes=(0, nn.broadcast), length=c.num_layers)
    x, aux = scanned(c, p, self.capture, name="layers")(x, xs, {"bias": bias, "probe": probe})
    half = x.shape[1] // 2
    x = x[:, :2 * half].reshape(x.shape[0], half, 2, d).mean(axis=2)
    return LayerNorm(eps=LN_EPS, policy=p, name="final_norm")(x), aux


def hf_rules(cfg: AudioEncoderConfig, prefixes=("audio_tower.", "model.audio_tower.")):
  """Declarative map for the audio tower; prefixes: alternatives for HF's 'audio_tower.' (hub
  and v5-saved checkpoints) / 'model.audio_tower.' (v5 in-memory names)."""
  L = cfg.num_layers

  def alt(name):
    return tuple(p + name for p in prefixes)

  rules = [Rule(("embed_positions",), alt("embed_positions.weight")),
           Rule(("final_norm", "scale"), alt("layer_norm.weight")), Rule(("final_norm", "bias"), alt("layer_norm.bias"))]
  for conv in ("conv1", "conv2"):  # torch Conv1d weight [D, C, 3] -> [3, C, D]
    rules += [Rule((f"{conv}_kernel",), alt(f"{conv}.weight"), transpose), Rule((f"{conv}_bias",), alt(f"{conv}.bias"))]
  linears = {("attn", "q"): "self_attn.q_proj", ("attn", "k"): "self_attn.k_proj", ("attn", "v"): "self_attn.v_proj",
             ("attn", "o"): "self_attn.out_proj", ("mlp", "fc1"): "fc1", ("mlp", "fc2"): "fc2"}
  for path, name in linears.items():
    rules.append(Rule(("layers",) + path + ("kernel",), alt(f"layers.{{i}}.{name}.weight"), transpose, L))
    if path != ("attn", "k"):
      rules.append(Rule(("layers",) + path + ("bias",), alt(f"layers.{{i}}.{name}.bias"), None, L))
  for ours, theirs in (("ln1", "self_attn_layer_norm"), ("ln2", "final_layer_norm")):
    rules.append(Rule(("layers", ours, "scale"), alt(f"layers.{{i}}.{theirs}.weight"), None, L))
    rules.append(Rule(("layers", ours, "bias"), alt(f"layers.{{i}}.{theirs}.bias"), None, L))
  return rules
