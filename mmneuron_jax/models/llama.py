"""Llama-family decoder (Llama-2 / Vicuna, Mistral; Qwen2 via q/k/v biases).

Layers are stacked `[L, ...]` and run under `nn.scan`; each layer returns `(x, aux)` where
aux holds the probe results, captured neurons, lens readouts and (on request) keys/values.
"""
import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmneuron_jax.convert import hf_config
from mmneuron_jax.convert.checks import reject_unsupported
from mmneuron_jax.convert.mapping import Rule
from mmneuron_jax.convert.transforms import transpose
from mmneuron_jax.nn.attention import SelfAttention
from mmneuron_jax.nn.layers import RMSNorm, rms_norm
from mmneuron_jax.nn.logit_lens import lens_readout
from mmneuron_jax.nn.mlp import GatedMLP
from mmneuron_jax.nn.policy import Policy
from mmneuron_jax.nn.probes import QKProbe
from mmneuron_jax.nn.rope import inv_frequencies, rope_cos_sin

SUPPORTED_ROPE_TYPES = ("default", "linear")
QWEN2_TYPES = ("qwen2", "qwen2_vl", "qwen2_vl_text")  # q/k/v biases
# config.json fields the parser reads (the rest: convert.hf_config.IGNORED, or must be HF's default).
HF_FIELDS = ("model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
             "num_attention_heads", "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_theta", "rope_scaling",
             "rope_parameters", "partial_rotary_factor", "sliding_window", "use_sliding_window", "layer_types",
             "max_window_layers", "tie_word_embeddings", "attention_bias", "mlp_bias", "pretraining_tp", "hidden_act",
             "use_mrope")
# Read-and-ignored: RoPE has no learned table, so the trained context length changes no number.
HF_IGNORED = ("max_position_embeddings",)


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  rms_norm_eps: float = 1e-6
  rope_theta: float = 10000.0
  rope_linear_factor: float = 1.0
  sliding_window: int | None = None
  tie_word_embeddings: bool = False
  qkv_bias: bool = False
  hidden_act: str = "silu"
  mrope_section: tuple[int, ...] | None = None  # Qwen2-VL: positions are int[3, B, T]

  @classmethod
  def from_hf(cls, c: dict, where: str = "text_config", allow_mrope: bool = False,
              defaults: dict | None = None, ignored=()) -> "DecoderConfig":
    """From a HF Llama/Mistral/Qwen2 config dict; raises on features we do not implement.

    c: filled by `convert.hf_config.fill` (with its class `defaults`); given defaults None, `c` is
    filled here through its own model_type's class. allow_mrope: accept Qwen2-VL's M-RoPE (rope
    type 'mrope', or 'default' with an `mrope_section`, in `rope_scaling` / `rope_parameters`);
    then positions are int[3, B, T]. ignored: more field names the caller reads (a flat config).
    """
    if defaults is None:
      c, defaults = hf_config.fill(dict(c, model_type=c.get("model_type", "llama")), where)
    hf_config.check_fields(c, defaults, HF_FIELDS, where, HF_IGNORED + tuple(ignored))
    rope = dict(c.get("rope_parameters") or c.get("rope_scaling") or {})
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    mrope_section = None
    if allow_mrope:
      mrope_section = rope.get("mrope_section")
      if rope_type == "mrope" and mrope_section is None:
        reject_unsupported(where, {"rope.mrope_section": (None, {"a list of 3 ints"})})
      rope_type = "default" if rope_type == "mrope" else rope_type
      mrope_section = None if mrope_section is None else tuple(int(s) for s in mrope_section)
    theta = rope.get("rope_theta", c.get("rope_theta", 10000.0))
    reject_unsupported(where, {
        "use_mrope": (bool(c.get("use_mrope", False)), {False, allow_mrope}),
        "hidden_act": (c.get("hidden_act", "silu"), {"silu"}),
        "rope_type": (rope_type, set(SUPPORTED_ROPE_TYPES)),
        "mlp_bias": (c.get("mlp_bias", False), {False}),
        "pretraining_tp": (c.get("pretraining_tp", 1), {1}),
        "partial_rotary_factor": (rope.get("partial_rotary_factor", c.get("partial_rotary_factor", 1.0)), {1.0}),
    })
    model_type = c.get("model_type", "llama")
    reject_unsupported(where, {"model_type": (model_type, {"llama", "mistral", *QWEN2_TYPES})})
    qwen2 = model_type in QWEN2_TYPES
    qkv_bias = bool(c.get("attention_bias", False)) or qwen2
    if not qwen2 and c.get("attention_bias", False):
      reject_unsupported(where, {"attention_bias": (True, {False})})
    window = c.get("sliding_window") if model_type == "mistral" else None
    if model_type != "mistral":  # one error naming both, whichever the file set
      reject_unsupported(where, {
          "use_sliding_window": (bool(c.get("use_sliding_window", False)), {False}),
          "layer_types": (tuple(sorted(set(c.get("layer_types") or ["full_attention"]))), {("full_attention",)}),
      })
    heads = c["num_attention_heads"]
    return cls(
        vocab_size=c["vocab_size"], hidden_size=c["hidden_size"],
        intermediate_size=c["intermediate_size"], num_layers=c["num_hidden_layers"],
        num_heads=heads, num_kv_heads=c.get("num_key_value_heads") or heads,
        head_dim=c.get("head_dim") or c["hidden_size"] // heads,
        rms_norm_eps=c.get("rms_norm_eps", 1e-6), rope_theta=float(theta),
        rope_linear_factor=float(rope.get("factor", 1.0)) if rope_type == "linear" else 1.0,
        sliding_window=window, tie_word_embeddings=bool(c.get("tie_word_embeddings", False)),
        qkv_bias=qkv_bias, mrope_section=mrope_section)


class DecoderLayer(nn.Module):
  """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x)). Returns (x, aux)."""
  cfg: DecoderConfig
  policy: Policy = Policy()
  capture: bool = False
  return_kv: bool = False

  @nn.compact
  def __call__(self, x, xs, ctx):
    """x float[B, T, D]; xs: per-layer {'mask': float[F], 'cache': {'k','v'}}; ctx: shared."""
    c, p = self.cfg, self.policy
    h = RMSNorm(eps=c.rms_norm_eps, policy=p, name="input_norm")(x)
    attn = SelfAttention(num_heads=c.num_heads, num_kv_heads=c.num_kv_heads, head_dim=c.head_dim, qkv_bias=c.qkv_bias,
                         out_bias=False, policy=p, name="attn")
    attn_out, kv = attn(
        h, ctx["attn_mask"], ctx["cos"], ctx["sin"], xs.get("cache"), ctx.get("cache_index"))
    x = x + attn_out
    h = RMSNorm(eps=c.rms_norm_eps, policy=p, name="post_attn_norm")(x)
    mlp = GatedMLP(hidden=c.intermediate_size, act=c.hidden_act, use_bias=False, policy=p, name="mlp")
    mlp_out, neurons = mlp(h, xs.get("mask"))
    x = x + mlp_out
    aux = {}
    if self.capture:
      aux["neurons"] = neurons
    if ctx.get("probe") is not None:
      probe = ctx["probe"]
      if isinstance(probe, QKProbe):  # e.g. MINER's in-scan scores: post-RoPE q, k of this layer
        aux["probe"] = probe(neurons, q=kv["q"], k=kv["k"])
      else:
        aux["probe"] = probe(neurons)
    if ctx.get("lens") is not None:
      aux["lens"] = lens_readout(x, ctx["lens"], ctx["final_norm"], c.rms_norm_eps, ctx["unembed"], p.precision,
                                 xs.get("translator"))
    if self.return_kv or xs.get("cache") is not None:
      aux["cache"] = {"k": kv["k"], "v": kv["v"]}
    return x, aux


class Decoder(nn.Module):
  """Token embedding, scanned layers, final norm and LM head.

  Params: embed_tokens.embedding [V, D], layers.* [L, ...], final_norm.scale [D],
  lm_head.kernel [D, V] (absent when tied).
  """
  cfg: DecoderConfig
  policy: Policy = Policy()
  capture: bool = False
  return_kv: bool = False
  remat: bool = False

  @nn.compact
  def __call__(self, input_ids, positions, attn_mask, *, features=None, feature_index=None, mask=None,
               probe=None, lens=None, cache=None, cache_index=None):
    """input_ids int[B, T]; positions int[B, T]; attn_mask: a `CausalMask` or an additive
    attention bias float32[B, T, S] (`mask` is the neuron mask).

    features float[N, D] and feature_index int32[B, T] (-1 = keep the token embedding) splice
    encoder outputs into the sequence. mask float[L, F]; probe: a probe pytree; lens: Lens;
    cache {'k','v': float[L, B, S, K, hd]} written at cache_index (decode).
    Returns (logits float32[B, T, V], aux stacked over layers).
    """
    c, p = self.cfg, self.policy
    embedding = self.param("embed_tokens", nn.initializers.normal(0.02), (c.vocab_size, c.hidden_size), p.param)
    x = jnp.take(embedding, input_ids, axis=0).astype(p.compute)
    if features is not None:
      idx = jnp.clip(feature_index, 0, features.shape[0] - 1)
      x = jnp.where((feature_index >= 0)[..., None], features.astype(x.dtype)[idx], x)
    final_norm = self.param("final_norm", nn.initializers.ones, (c.hidden_size,), p.param)
    if c.tie_word_embeddings:
      unembed = embedding.T
    else:
      unembed = self.param("lm_head", nn.initializers.normal(0.02), (c.hidden_size, c.vocab_size), p.param)
    cos, sin = rope_cos_sin(positions, inv_frequencies(c.head_dim, c.rope_theta, c.rope_linear_factor),
                            c.mrope_section)
    xs = {}
    if lens is not None and lens.translator is not None:  # tuned lens: per-layer maps scan with the layers
      xs["translator"] = lens.translator
      lens = lens.replace(translator=None)
    ctx = {"attn_mask": attn_mask, "cos": cos, "sin": sin, "probe": probe, "lens": lens,
           "final_norm": final_norm if lens is not None else None,
           "unembed": unembed if lens is not None else None, "cache_index": cache_index}
    if mask is not None:
      xs["mask"] = mask
    if cache is not None:
      xs["cache"] = cache
    layer = nn.remat(DecoderLayer, prevent_cse=False) if self.remat else DecoderLayer
    scanned = nn.scan(layer, variable_axes={"params": 0}, split_rngs={"params": True},
                      in_axes=(0, nn.broadcast), length=c.num_layers)
    x, aux = scanned(c, p, self.capture, self.return_kv, name="layers")(x, xs, ctx)
    x = rms_norm(x, final_norm, c.rms_norm_eps)
    logits = jnp.einsum("btd,dv->btv", x, unembed.astype(x.dtype), precision=p.precision)
    return logits.astype(jnp.float32), aux


def decode(model: nn.Module, input_ids, positions, attn_mask, *, features, feature_index, masks, probe, lens, cache,
           cache_index):
  """A full model's LLM: the `Decoder` 'llm' of `model` (its cfg.text, policy, capture of 'llm',
  return_kv, remat; made inside the model's compact call) on these inputs, with the 'llm' entries
  of `masks` / `probe`. Returns `Decoder`'s (logits float32[B, T, V], aux)."""
  decoder = Decoder(cfg=model.cfg.text, policy=model.policy, capture="llm" in model.capture,
                    return_kv=model.return_kv, remat=model.remat, name="llm")
  return decoder(input_ids, positions, attn_mask, features=features, feature_index=feature_index,
                 mask=masks.get("llm"), probe=probe.get("llm"), lens=lens, cache=cache, cache_index=cache_index)


def hf_rules(cfg: DecoderConfig, prefixes, head_prefixes):
  """Declarative map: our param path <- HF tensor name(s), per-layer names stacked to [L, ...].

  prefixes: alternatives for the decoder body ('model.language_model.', 'language_model.model.');
  head_prefixes: alternatives for the LM head ('lm_head.', 'language_model.lm_head.').
  """
  L = cfg.num_layers

  def alt(name, pre=prefixes):
    return tuple(p + name for p in pre)

  layer = {
      ("attn", "q", "kernel"): "self_attn.q_proj.weight", ("attn", "k", "kernel"): "self_attn.k_proj.weight",
      ("attn", "v", "kernel"): "self_attn.v_proj.weight", ("attn", "o", "kernel"): "self_attn.o_proj.weight",
      ("mlp", "gate", "kernel"): "mlp.gate_proj.weight", ("mlp", "up", "kernel"): "mlp.up_proj.weight",
      ("mlp", "down", "kernel"): "mlp.down_proj.weight",
  }
  rules = [Rule(("layers",) + path, alt(f"layers.{{i}}.{name}"), transpose, L) for path, name in layer.items()]
  if cfg.qkv_bias:
    rules += [Rule(("layers", "attn", n, "bias"), alt(f"layers.{{i}}.self_attn.{n}_proj.bias"), None, L)
              for n in "qkv"]
  rules += [
      Rule(("layers", "input_norm", "scale"), alt("layers.{i}.input_layernorm.weight"), None, L),
      Rule(("layers", "post_attn_norm", "scale"), alt("layers.{i}.post_attention_layernorm.weight"), None, L),
      Rule(("embed_tokens",), alt("embed_tokens.weight")),
      Rule(("final_norm",), alt("norm.weight")),
  ]
  if not cfg.tie_word_embeddings:
    rules.append(Rule(("lm_head",), alt("weight", head_prefixes), transpose))
  return rules
