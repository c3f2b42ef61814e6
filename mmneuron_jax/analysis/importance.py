"""Gradient importance of neurons (beyond the papers; REFERENCE.md, last line): a sixth score.

For each probe module, with a ones mask m float[L, F] multiplying its neurons (the `masks`
argument of `model.apply`), the importance of neuron (l, j) is

  g[l, j] = dNLL/dm[l, j] at m = 1  =  sum_{b, t} a[l, b, t, j] * dNLL/da[l, b, t, j],

NLL = the answer tokens' summed negative log-likelihood under next-token prediction: the logits
at position t - 1 predict the id at t, and `answer_mask[b, t]` marks the target positions t (so
position 0 can never be a target). Negative g: the neuron helps produce the answer (scaling
it down raises the loss). One backward pass gives all modules at once.

Only the masks are differentiated (params and batch are ordinary jit arguments, never
differentiated), and the layer scans are rematerialised by default (`Decoder.remat`), so memory
stays at one layer's activations plus the per-layer carry. A model `on_mesh` runs the same
gradient as a jit with explicit shardings (params per its rules, batch split on B, result replicated).

Example:

  from mmneuron_jax.analysis.importance import grad_importance
  answer = batch["labels"] != -100                     # bool[B, T], target positions
  g = grad_importance(model, model.params, batch, answer, modules=("llm", "vision"))
  g["llm"]                                             # float32[L, F]
  # rank: most helpful first -> np.argsort(np.asarray(g["llm"]).ravel())
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from mmneuron_jax.models.base import forward


def answer_nll(logits, input_ids, answer_mask):
  """float[B, T, V] logits, int[B, T] ids, bool[B, T] targets -> float32 scalar: the summed
  -log p(ids[b, t] | logits[b, t - 1]) over answer_mask[b, t] (t >= 1)."""
  logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
  target = jnp.take_along_axis(logp, input_ids[:, 1:, None].astype(jnp.int32), axis=-1)[..., 0]
  return -jnp.sum(jnp.where(answer_mask[:, 1:], target, 0.0))


def _loss(module, masks, params, batch, answer_mask):
  return answer_nll(forward(module, params, batch, masks).logits, batch["input_ids"], answer_mask)


def _grad_fn(module):
  """d answer NLL / d masks: (masks, params, batch, answer_mask) -> {module: float32[L, F]}."""
  return jax.grad(functools.partial(_loss, module))


def grad_importance(model, params, batch, answer_mask, modules=("llm",), remat: bool = True) -> dict:
  """model: a `Model`; batch: HF-named arrays (as `model.apply`); answer_mask bool[B, T] target
  positions (answer_mask[:, 0] must be False) -> {module: float32[L, F]} = d NLL / d ones-mask.

  Jitted once per (model, modules, remat) (`Model.jit_step`: ones-masks and gradients
  replicated, batch and answer_mask split on B on a mesh); remat=True rematerialises the layer
  scan."""
  modules = tuple(modules)
  if not modules:
    raise ValueError("grad_importance needs at least one module")
  for name in modules:
    if name not in model.probe_modules:
      raise KeyError(f"grad_importance: unknown module {name!r}; probe modules are {sorted(model.probe_modules)}")
  prepared = model.host_batch(batch)
  am = np.asarray(answer_mask)
  ids_shape = tuple(np.shape(prepared["input_ids"]))
  if am.shape != ids_shape:
    raise ValueError(f"answer_mask has shape {am.shape}; input_ids has {ids_shape}")
  am = am.astype(bool)
  if am[:, 0].any():
    raise ValueError("answer_mask[:, 0] is set, but position 0 has no preceding logits to predict it")
  if "attention_mask" in prepared and (am & (np.asarray(prepared["attention_mask"]) == 0)).any():
    raise ValueError("answer_mask marks padding positions (attention_mask == 0)")
  step = model.jit_step(("grad_importance", modules, bool(remat)),
                        _grad_fn(model.module.clone(capture=(), remat=bool(remat))),
                        ("replicated", "params", "batch", "batch"))
  masks = {name: np.ones(model.probe_modules[name], np.float32) for name in modules}
  grads = step(masks, params, prepared, am)
  return {name: grads[name] for name in modules}
