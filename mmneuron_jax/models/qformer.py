"""InstructBLIP Q-Former (HF `InstructBlipQFormerModel`): a post-LN BERT over [queries; instruction].

Learned query tokens `[Q, D]` are concatenated with the embedded instruction (`qformer_input_ids`:
word + position embeddings) and layer-normed. Each layer: self-attention over all positions
(text padding masked as keys), cross-attention from the query positions only to the image
features (layers l with l % cross_attention_frequency == 0), then separate feed-forward paths:
`ffn_query` (HF `intermediate_query`/`output_query`) on the Q query positions and `ffn_text`
(`intermediate`/`output`) on the text positions. Neurons: act(fc1(x)) of each path.

Layers differ (cross-attention on some), so they run in a Python loop over stacked params:
`layers.*` are `[L, ...]`, `cross.*` are `[Lc, ...]` (one entry per cross-attention layer).
Probe modules `qformer_query` (tokens `[B, Q]`) and `qformer_text` (tokens `[B, T_text]`) see
masks `float[L, F]` and return captures `[L, B, Q|T_text, F]`.
"""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from mmneuron_jax.convert import hf_config
from mmneuron_jax.convert.checks import reject_unsupported
from mmneuron_jax.convert.mapping import Rule
from mmneuron_jax.convert.transforms import transpose
from mmneuron_jax.nn.attention import attend, mask_to_bias
from mmneuron_jax.nn.layers import ACTIVATIONS, activation
from mmneuron_jax.nn.mlp import apply_mask
from mmneuron_jax.nn.policy import Policy

QUERY, TEXT = "qformer_query", "qformer_text"


# pad_token_id only marks the embedding row HF zeroes at init; encoder_hidden_size is overridden.
HF_FIELDS = ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
             "intermediate_size", "max_position_embeddings", "cross_attention_frequency", "encoder_hidden_size",
             "hidden_act", "layer_norm_eps", "position_embedding_type", "pad_token_id")


@dataclasses.dataclass(frozen=True)
class QFormerConfig:
  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  encoder_hidden_size: int
  cross_attention_frequency: int = 2
  max_position_embeddings: int = 512
  layer_norm_eps: float = 1e-12
  hidden_act: str = "gelu"

  @property
  def cross_layers(self) -> tuple[int, ...]:
    """Layers with cross-attention to the image (HF: layer_idx % cross_attention_frequency == 0)."""
    return tuple(l for l in range(self.num_layers) if l % self.cross_attention_frequency == 0)

  @classmethod
  def from_hf(cls, c: dict, encoder_hidden_size: int, where: str = "qformer_config",
              defaults: dict | None = None) -> "QFormerConfig":
    """`encoder_hidden_size` is the vision width (HF overrides the sub-config's field with it).
    c: `convert.hf_config.fill`ed, with its class `defaults` (None: filled here)."""
    if defaults is None:
      c, defaults = hf_config.fill_as(c, "InstructBlipQFormerConfig", where)
    hf_config.check_fields(c, defaults, HF_FIELDS, where)
    freq = c.get("cross_attention_frequency", 2)
    reject_unsupported(where, {
        "model_type": (c.get("model_type", "instructblip_qformer"), {"instructblip_qformer"}),
        "hidden_act": (c.get("hidden_act", "gelu"), set(ACTIVATIONS)),
        "position_embedding_type": (c.get("position_embedding_type", "absolute"), {"absolute"}),
        "cross_attention_frequency >= 1": (isinstance(freq, int) and freq >= 1, {True}),
    })
    if c["hidden_size"] % c["num_attention_heads"]:
      raise ValueError(f"{where}: hidden_size={c['hidden_size']} is not divisible by "
                       f"num_attention_heads={c['num_attention_heads']}")
    return cls(vocab_size=c["vocab_size"], hidden_size=c["hidden_size"], intermediate_size=c["intermediate_size"],
               num_layers=c["num_hidden_layers"], num_heads=c["num_attention_heads"],
               encoder_hidden_size=encoder_hidden_size, cross_attention_frequency=freq,
               max_position_embeddings=c.get("max_position_embeddings", 512),
               layer_norm_eps=c.get("layer_norm_eps", 1e-12), hidden_act=c.get("hidden_act", "gelu"))


# -- params: shapes, init ------------------------------------------------------------------

def _linear(d_in, d_out):
  return {"kernel": (d_in, d_out), "bias": (d_out,)}


def _norm(d):
  return {"scale": (d,), "bias": (d,)}


def attention_shapes(d, d_kv):
  """One BERT attention block: q, k, v, o projections and the post-LN `norm`."""
  return {"q": _linear(d, d), "k": _linear(d_kv, d), "v": _linear(d_kv, d), "o": _linear(d, d), "norm": _norm(d)}


def ffn_shapes(d, f):
  return {"fc1": _linear(d, f), "fc2": _linear(f, d), "norm": _norm(d)}


def layer_shapes(cfg: QFormerConfig):
  """Per-layer param shapes of the parts every layer has (stacked to `[L, ...]`)."""
  d, f = cfg.hidden_size, cfg.intermediate_size
  return {"attn": attention_shapes(d, d), "ffn_query": ffn_shapes(d, f), "ffn_text": ffn_shapes(d, f)}


def init_params(rng, shapes: dict, dtype, n: int | None = None):
  """Nested dict of shapes -> params (stacked `[n, *shape]` when n is given): kernels
  normal(0.02), scales 1, biases 0."""
  flat = traverse_util.flatten_dict(shapes)
  out = {}
  for k, (path, shape) in enumerate(sorted(flat.items())):
    full = tuple(shape) if n is None else (n,) + tuple(shape)
    if path[-1] == "kernel":
      out[path] = 0.02 * jax.random.normal(jax.random.fold_in(rng, k), full, dtype)
    else:
      out[path] = (jnp.ones if path[-1] == "scale" else jnp.zeros)(full, dtype)
  return traverse_util.unflatten_dict(out)


# -- pure layer functions ------------------------------------------------------------------

def dense(x, p, precision):
  """x float[..., I] @ kernel [I, O] + bias [O], in x's dtype."""
  y = jnp.einsum("...i,io->...o", x, p["kernel"].astype(x.dtype), precision=precision)
  return y + p["bias"].astype(y.dtype)


def layer_norm(x, p, eps):
  """torch.nn.LayerNorm (biased variance, eps inside the sqrt), computed in fp32."""
  x32 = x.astype(jnp.float32)
  mean = jnp.mean(x32, axis=-1, keepdims=True)
  var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
  y = (x32 - mean) * jax.lax.rsqrt(var + eps)
  return (y * p["scale"].astype(jnp.float32) + p["bias"].astype(jnp.float32)).astype(x.dtype)


def attention_block(x, kv, p, bias, num_heads, eps, precision):
  """HF QFormerAttention: LN(x + o(MHA(q=x, k=v=kv))). x float[N, T, D], kv float[N, S, Dkv],
  bias float32[N, T, S] or None -> float[N, T, D]."""
  n, t, d = x.shape
  hd = d // num_heads
  q = dense(x, p["q"], precision).reshape(n, t, num_heads, hd)
  k = dense(kv, p["k"], precision).reshape(n, kv.shape[1], num_heads, hd)
  v = dense(kv, p["v"], precision).reshape(n, kv.shape[1], num_heads, hd)
  out, _ = attend(q, k, v, bias, precision)
  return layer_norm(x + dense(out, p["o"], precision), p["norm"], eps)


def feed_forward(x, p, act, mask, eps, precision):
  """LN(x + fc2(a)), a = apply_mask(act(fc1(x)), mask). Returns (float[N, T, D], neurons float[N, T, F])."""
  a = act(dense(x, p["fc1"], precision))
  if mask is not None:
    a = apply_mask(a, mask)
  return layer_norm(x + dense(a, p["fc2"], precision), p["norm"], eps), a


def _stack_layers(results: list):
  """Per-layer pytrees -> one pytree stacked on a leading `[L]` axis."""
  return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *results)


class QFormer(nn.Module):
  """Params: word_embeddings [V, D], position_embeddings [P, D], embed_norm, layers.* [L, ...],
  cross.* [Lc, ...]. `capture`: probe-module names (`qformer_query`, `qformer_text`) to return."""
  cfg: QFormerConfig
  policy: Policy = Policy()
  capture: tuple[str, ...] = ()

  @nn.compact
  def __call__(self, query_tokens, image, input_ids=None, attention_mask=None, masks=None, probe=None):
    """query_tokens float[Q, D]; image float[N, S, Dv] (post-normed vision output);
    input_ids int[N, T_text] or None (queries only); attention_mask int[N, T_text] (1 = keep).
    masks / probe: {'qformer_query' | 'qformer_text': float[L, F] | probe}.

    Returns (query output float[N, Q, D], aux {'qformer_query': {...}, 'qformer_text': {...}})
    with aux[m]['neurons'] float[L, N, Q|T_text, F] when captured and aux[m]['probe'] `[L, ...]`.
    """
    c, p = self.cfg, self.policy
    masks, probe = masks or {}, probe or {}
    d, eps, prec = c.hidden_size, c.layer_norm_eps, p.precision
    word = self.param("word_embeddings", nn.initializers.normal(0.02), (c.vocab_size, d), p.param)
    pos = self.param("position_embeddings", nn.initializers.normal(0.02), (c.max_position_embeddings, d), p.param)
    embed_norm = self.param("embed_norm", init_params, _norm(d), p.param)
    layers = self.param("layers", init_params, layer_shapes(c), p.param, c.num_layers)
    cross = self.param("cross", init_params, attention_shapes(d, c.encoder_hidden_size), p.param,
                       len(c.cross_layers))
    n, nq = image.shape[0], query_tokens.shape[0]
    x = jnp.broadcast_to(query_tokens.astype(p.compute)[None], (n, nq, d))
    key_valid = jnp.ones((n, nq), bool)
    if input_ids is not None and input_ids.shape[1] > 0:
      t = input_ids.shape[1]
      if t > c.max_position_embeddings:
        raise ValueError(f"qformer_input_ids has {t} tokens; the Q-Former has {c.max_position_embeddings} positions")
      text = jnp.take(word, input_ids, axis=0) + pos[:t][None]
      x = jnp.concatenate([x, text.astype(p.compute)], axis=1)
      am = jnp.ones_like(input_ids) if attention_mask is None else attention_mask
      key_valid = jnp.concatenate([key_valid, am.astype(bool)], axis=1)
    x = layer_norm(x, embed_norm, eps)
    t_all = x.shape[1]
    bias = mask_to_bias(jnp.broadcast_to(key_valid[:, None, :], (n, t_all, t_all)))
    image = image.astype(p.compute)
    act = activation(c.hidden_act)
    per_layer = {QUERY: [], TEXT: []}
    for l in range(c.num_layers):
      lp = jax.tree_util.tree_map(lambda a, l=l: a[l], layers)
      h = attention_block(x, x, lp["attn"], bias, c.num_heads, eps, prec)
      hq, ht = h[:, :nq], h[:, nq:]
      if l in c.cross_layers:
        cp = jax.tree_util.tree_map(lambda a, k=c.cross_layers.index(l): a[k], cross)
        hq = attention_block(hq, image, cp, None, c.num_heads, eps, prec)
      paths = [(QUERY, hq, "ffn_query")] + ([(TEXT, ht, "ffn_text")] if t_all > nq else [])
      outs = []
      for name, hin, key in paths:
        m = masks.get(name)
        layer_mask = None if m is None else jax.tree_util.tree_map(lambda a, l=l: a[l], m)
        y, neurons = feed_forward(hin, lp[key], act, layer_mask, eps, prec)
        outs.append(y)
        aux = {}
        if name in self.capture:
          aux["neurons"] = neurons
        if probe.get(name) is not None:
          aux["probe"] = probe[name](neurons)
        per_layer[name].append(aux)
      x = jnp.concatenate(outs, axis=1)
    aux = {name: _stack_layers(v) if v and v[0] else {} for name, v in per_layer.items()}
    return x[:, :nq], aux


# -- conversion ----------------------------------------------------------------------------

def stack(*xs):
  """Per-layer tensors (one rule part each) -> `[n, ...]`."""
  return np.stack(xs)


def stack_transposed(*xs):
  """Per-layer torch Linear weights [out, in] -> stacked flax kernels `[n, in, out]`."""
  return np.stack([np.transpose(x) for x in xs])


def hf_rules(cfg: QFormerConfig, prefix: str = "qformer."):
  """Declarative map: our param path <- HF name(s) under `prefix`. Parts every layer has are
  stacked with `{i}`; the cross-attention parts list their layers' names explicitly."""
  L = cfg.num_layers
  layer = prefix + "encoder.layer.{i}."
  rules = [
      Rule(("word_embeddings",), prefix + "embeddings.word_embeddings.weight"),
      Rule(("position_embeddings",), prefix + "embeddings.position_embeddings.weight"),
      Rule(("embed_norm", "scale"), prefix + "embeddings.layernorm.weight"),
      Rule(("embed_norm", "bias"), prefix + "embeddings.layernorm.bias"),
  ]
  per_layer = {**_attention_names(("attn",), "attention"),
               **_ffn_names(("ffn_query",), "intermediate_query", "output_query"),
               **_ffn_names(("ffn_text",), "intermediate", "output")}
  for path, name in per_layer.items():
    rules.append(Rule(("layers",) + path, layer + name, transpose if path[-1] == "kernel" else None, L))
  for path, name in _attention_names((), "crossattention").items():
    names = [prefix + f"encoder.layer.{l}.{name}" for l in cfg.cross_layers]
    rules.append(Rule(("cross",) + path, names, stack_transposed if path[-1] == "kernel" else stack))
  return rules


def _linear_names(ours, theirs):
  return {ours + ("kernel",): theirs + ".weight", ours + ("bias",): theirs + ".bias"}


def _norm_names(ours, theirs):
  return {ours + ("scale",): theirs + ".weight", ours + ("bias",): theirs + ".bias"}


def _attention_names(ours, theirs):
  """HF `{theirs}.attention.{query,key,value}`, `{theirs}.output.{dense,LayerNorm}` -> our block."""
  out = {}
  for leaf, name in (("q", "attention.query"), ("k", "attention.key"), ("v", "attention.value"),
                     ("o", "output.dense")):
    out.update(_linear_names(ours + (leaf,), f"{theirs}.{name}"))
  return out | _norm_names(ours + ("norm",), f"{theirs}.output.LayerNorm")


def _ffn_names(ours, inter, out):
  """HF `{inter}.dense`, `{out}.dense`, `{out}.LayerNorm` -> our fc1, fc2, norm."""
  return (_linear_names(ours + ("fc1",), f"{inter}.dense") | _linear_names(ours + ("fc2",), f"{out}.dense")
          | _norm_names(ours + ("norm",), f"{out}.LayerNorm"))
