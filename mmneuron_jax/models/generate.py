"""Greedy or seeded-sampling generation with a KV cache; neuron masks apply at every step.

Decoding follows HF `generate`'s logits processors (models/sampling.py): repetition penalty,
then (sampling only) temperature, top-k, top-p.

Prompts must be left-padded (as HF generation expects). Positions follow HF generate:
cumsum(attention_mask) - 1 for the prompt, then one more per new token. Family hook: a module
with `generation_keeps_position_ids = True` prefills with its prepared `position_ids` (e.g.
Qwen2-VL M-RoPE int[3, B, T]); each new token then takes the row's largest prompt position + 1 + i
on every stream (HF's rope deltas: a video's temporal positions may pass the last token's).

On a model `on_mesh`, the same function runs as a jit with explicit in/out shardings (params per
the model's rules, prompts split on the batch axis, masks replicated, tokens split on B).
"""
import jax
import jax.numpy as jnp
import numpy as np

from mmneuron_jax import sharding
from mmneuron_jax.convert.hf_config import GENERATION_CONFIG, eos_token_ids
from mmneuron_jax.models import sampling as sampling_lib
from mmneuron_jax.models.forward import mask_arrays
from mmneuron_jax.nn.attention import causal_allowed, causal_mask, mask_to_bias


def _pad_cache(kv, total):
  """{'k','v': float[L, B, T, K, hd]} -> zero-padded to `total` positions on axis 2."""
  return jax.tree_util.tree_map(lambda a: jnp.pad(a, ((0, 0), (0, 0), (0, total - a.shape[2]), (0, 0), (0, 0))), kv)


def _generate_impl(module, params, batch, max_new_tokens, sampling, masks, eos_ids, seed):
  """Prefill + `max_new_tokens` cached decode steps -> int32[B, max_new_tokens] (-1 after EOS)."""
  ids = batch["input_ids"]
  am = batch["attention_mask"]
  b, t = ids.shape
  total = t + max_new_tokens
  window = module.cfg.text.sliding_window
  positions = batch["position_ids"] if "position_ids" in batch else jnp.maximum(jnp.cumsum(am, axis=1) - 1, 0)
  extra = {k: batch[k] for k in module.extra_inputs if k in batch}
  logits, aux = module.apply({"params": params}, ids, positions, causal_mask(am, window), masks=masks, **extra)
  cache = _pad_cache(aux["llm"]["cache"], total)
  kv_valid = jnp.concatenate([am.astype(bool), jnp.zeros((b, max_new_tokens), bool)], axis=1)
  key = jax.random.PRNGKey(seed)
  llm_mask = None if masks is None else {k: v for k, v in masks.items() if k == "llm"}
  seen = sampling_lib.seen_tokens(ids, am.astype(bool), logits.shape[-1])
  top = positions.max(axis=-1)  # int[B] (left-padded: the last position), or int[3, B] (M-RoPE streams)
  if positions.ndim == 3:
    top = jnp.broadcast_to(top.max(axis=0), top.shape)

  def step(carry, i):
    last_logits, cache, kv_valid, done, key, seen = carry
    key, sub = jax.random.split(key)
    token = sampling_lib.pick(last_logits, seen, sub, sampling)
    token = jnp.where(done, -1, token)
    seen = sampling_lib.add_token(seen, token)
    done = done | jnp.isin(token, eos_ids)
    index = t + i
    kv_valid = kv_valid.at[:, index].set(True)
    bias = mask_to_bias(causal_allowed(kv_valid, index[None], window))
    pos = (top + 1 + i)[..., None]
    logits, aux = module.apply({"params": params}, jnp.maximum(token, 0)[:, None], pos, bias, masks=llm_mask,
                               cache=cache, cache_index=index)
    return (logits[:, -1], aux["llm"]["cache"], kv_valid, done, key, seen), token

  init = (logits[:, -1], cache, kv_valid, jnp.zeros((b,), bool), key, seen)
  _, tokens = jax.lax.scan(step, init, jnp.arange(max_new_tokens))
  return tokens.T


# Argument kinds of `_generate_impl(module, params, batch, max_new_tokens, sampling, masks, eos_ids, seed)`.
GENERATE_KINDS = ("static", "params", "batch", "static", "static", "replicated", "replicated", "replicated")


def _tokens_sharding(tokens, mesh):
  """int32[B, N] tokens stay split on B."""
  return sharding.batch_sharding_for(tokens.shape, mesh, 0)


def generate(model, params, batch, max_new_tokens=32, masks=None, eos_token_id=None, pad_token_id=0,
             temperature=0.0, seed=0, do_sample=None, top_k=0, top_p=1.0, repetition_penalty=1.0):
  """-> int32[B, max_new_tokens] new tokens; after a row's EOS the rest is `pad_token_id`.

  HF semantics (models/sampling.py): do_sample False -> greedy on the repetition-penalised logits;
  True -> a seeded draw after temperature / top_k / top_p. do_sample None (the default): sample iff
  temperature > 0, so `temperature=0.0` is plain greedy."""
  sampling = sampling_lib.Sampling.from_args(temperature, do_sample, top_k, top_p, repetition_penalty)
  dev = dict(model.host_batch(batch))
  if "attention_mask" not in dev:
    dev["attention_mask"] = np.ones(np.shape(dev["input_ids"]), np.int32)
  if not bool(np.all(np.asarray(dev["attention_mask"])[:, -1])):
    raise ValueError("generate needs left-padded prompts (attention_mask[:, -1] must be all 1)")
  if not model.module.generation_keeps_position_ids:
    dev.pop("position_ids", None)
  if eos_token_id is None:  # generation_config.json's, else the filled config's; never a silent -1
    eos_token_id = eos_token_ids(model.config, model.config.get(GENERATION_CONFIG))
  eos = np.asarray(np.atleast_1d(eos_token_id), np.int32)
  module = model.module.clone(return_kv=True, capture=())
  step = model.jit_step("generate", _generate_impl, GENERATE_KINDS, _tokens_sharding)
  tokens = sharding.to_host(step(module, params, dev, int(max_new_tokens), sampling, mask_arrays(masks), eos,
                                 np.asarray(seed, np.int32)))
  return np.where(tokens < 0, pad_token_id, tokens)
