"""Tuned lens (Belrose et al. 2023; beyond the papers): one affine translator per LLM layer,
trained with optax so that reading h_l through it matches the model's final distribution.

A translator is the residual map h -> h + h @ W_l + b_l (`nn.logit_lens.translate`), stacked
{'weight': float32[L, D, D], 'bias': float32[L, D]}. Zeros (`identity_translators`) give the
logit lens exactly, in the scan (`Lens(..., translator=T)` through `model.apply`) and here.

Training never holds [L, B, T, V]: it runs on residuals captured at sampled positions
(`Lens(positions, hidden=True)` -> float[L, B, P, D]), flattened to hidden float[L, N, D], and
reads one layer at a time (`jax.lax.map` + remat), one minibatch of positions at a time. The
target is the last layer's readout, which equals the model's logits:

  loss = mean_l mean_n KL(p_final[n] || p_l[n]),  p_l = softmax(unembed(norm(translate_l(h_l)))).

Saved with orbax under `<root>/<name>/` and reloaded by name: `io.tuned_lens`.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mmneuron_jax.nn.logit_lens import readout_logits, translate
from mmneuron_jax.io.progress import Progress

def identity_translators(layers: int, hidden: int) -> dict:
  """{'weight': zeros float32[L, D, D], 'bias': zeros float32[L, D]}: the logit lens."""
  return {"weight": jnp.zeros((layers, hidden, hidden), jnp.float32), "bias": jnp.zeros((layers, hidden), jnp.float32)}


def readout_of(model, params) -> dict:
  """The LLM's final norm and unembedding: {'norm_scale': [D], 'unembed': [D, V], 'eps': float}."""
  cfg = model.module.cfg.text
  llm = params["llm"]
  unembed = llm["embed_tokens"].T if cfg.tie_word_embeddings else llm["lm_head"]
  return {"norm_scale": llm["final_norm"], "unembed": unembed, "eps": float(cfg.rms_norm_eps)}


def layer_logits(translator, h, readout):
  """One layer: h float[N, D] (translator of that layer or None) -> float32[N, V]."""
  if translator is not None:
    h = translate(h, translator)
  return readout_logits(h[None], readout["norm_scale"], readout["eps"], readout["unembed"])[0]


def kl_to_final(logits, final_logp):
  """float32[N, V] layer logits, float32[N, V] final log-probs -> float32[N] KL(final || layer)."""
  logp = jax.nn.log_softmax(logits, axis=-1)
  return jnp.sum(jnp.exp(final_logp) * (final_logp - logp), axis=-1)


def _final_logp(hidden, readout):
  return jax.nn.log_softmax(layer_logits(None, hidden[-1], readout), axis=-1)


def mean_kl(translators, hidden, weights, readout):
  """hidden float[L, N, D], weights float[N] (0 = padding) -> scalar mean over layers of the
  weighted mean KL(final || translated layer)."""
  final = jax.lax.stop_gradient(_final_logp(hidden, readout))

  @jax.checkpoint
  def one(args):
    t, h = args
    return jnp.sum(weights * kl_to_final(layer_logits(t, h, readout), final)) / jnp.maximum(weights.sum(), 1.0)

  return jnp.mean(jax.lax.map(one, (translators, hidden)))


def _train_fn(readout_static, optimizer):
  eps = readout_static

  @jax.jit
  def step(translators, opt_state, hidden, weights, norm_scale, unembed):
    readout = {"norm_scale": norm_scale, "unembed": unembed, "eps": eps}
    loss, grads = jax.value_and_grad(mean_kl)(translators, hidden, weights, readout)
    grads = jax.tree_util.tree_map(lambda g: g.at[-1].set(0.0), grads)  # Adam would amplify round-off
    updates, opt_state = optimizer.update(grads, opt_state, translators)
    return optax.apply_updates(translators, updates), opt_state, loss

  return step


def train(hidden, readout, steps: int = 300, lr: float = 1e-3, batch_size: int = 256, seed: int = 0,
          init=None, progress: bool = True):
  """hidden float[L, N, D] residuals at training positions -> (translators, losses float[steps]).

  Adam on minibatches of `batch_size` positions (a fixed seeded permutation, cycled); the last
  layer is frozen at the identity (its readout is the model's own distribution)."""
  hidden = jnp.asarray(hidden, jnp.float32)
  layers, n, d = hidden.shape
  translators = init if init is not None else identity_translators(layers, d)
  optimizer = optax.adam(lr)
  opt_state = optimizer.init(translators)
  step = _train_fn(readout["eps"], optimizer)
  bs = min(batch_size, n)
  order = np.random.default_rng(seed).permutation(n)
  losses = []
  bar = Progress(steps, "tuned lens (steps)") if progress else None
  for i in range(steps):
    start = (i * bs) % n
    idx = np.take(order, np.arange(start, start + bs), mode="wrap")
    translators, opt_state, loss = step(translators, opt_state, hidden[:, idx], jnp.ones(bs, jnp.float32),
                                        readout["norm_scale"], readout["unembed"])
    losses.append(float(loss))
    if bar:
      bar.update()
  if bar:
    bar.close()
  return translators, np.asarray(losses)


@functools.partial(jax.jit, static_argnames=("eps", "top_k"))
def _metrics(translators, hidden, answers, norm_scale, unembed, eps, top_k):
  readout = {"norm_scale": norm_scale, "unembed": unembed, "eps": eps}
  final = _final_logp(hidden, readout)
  final_top = jnp.argmax(final, axis=-1)

  def one(args):
    t, h = args
    logits = layer_logits(t, h, readout)
    logp = jax.nn.log_softmax(logits, axis=-1)
    target = jnp.take_along_axis(logits, jnp.maximum(answers, 0)[:, None], axis=-1)
    rank = jnp.sum(logits > target, axis=-1)
    return {"entropy": -jnp.sum(jnp.exp(logp) * logp, axis=-1), "kl": kl_to_final(logits, final),
            "top1_agree": (jnp.argmax(logits, axis=-1) == final_top).astype(jnp.float32),
            "answer_rank": jnp.where(answers >= 0, rank, -1),
            "answer_topk": jnp.where(answers >= 0, (rank < top_k).astype(jnp.float32), jnp.nan)}

  return jax.lax.map(one, (translators, hidden))


def layer_metrics(translators, hidden, readout, answers=None, top_k: int = 10) -> dict:
  """Per layer and position, for the logit lens (translators None) or a tuned lens.

  hidden float[L, N, D]; answers int[N] answer token at each position (-1 = none). Returns numpy
  {'entropy', 'kl' (to final), 'top1_agree' (argmax == final argmax), 'answer_rank' (0 = top-1,
  -1 = no answer), 'answer_topk' (rank < top_k, NaN = no answer)}, each [L, N]."""
  hidden = jnp.asarray(hidden, jnp.float32)
  layers, n, d = hidden.shape
  translators = identity_translators(layers, d) if translators is None else translators
  answers = jnp.full((n,), -1, jnp.int32) if answers is None else jnp.asarray(answers, jnp.int32)
  out = _metrics(translators, hidden, answers, readout["norm_scale"], readout["unembed"], readout["eps"], top_k)
  return {k: np.asarray(v) for k, v in out.items()}
