"""Learned neuron masks (beyond the papers): a continuous relaxation of "which neurons carry one
group's (domain's or modality's) ability", optimised with optax through `model.apply`'s masks.

Per module, removal gates z float[L, F] in [0, 1] are hard-concrete variables (Louizos et al.
2018: stretched, clipped binary concrete with log_alpha float32[L, F]); the mask passed to the
forward is 1 - z, so z = 1 removes the neuron exactly as a DAPE deactivation does. Objective for a
target group (answer tokens t of sample b; `answer_mask` marks targets as in `importance.py`):

  loss = mean_{b in target} mean_t -log(1 - p(y_t))           (unlikelihood: bounded, raises the
       + keep_weight * mean_{b in others} mean_t -log p(y_t)     target's answer loss; keeps others)
       + l0_weight * sum_{l, j} P(z[l, j] != 0)               (expected number removed)

The learned set is {(l, j): deterministic gate > 0.5}. Layer scans are rematerialised by default.
Gates start at log_alpha = -1 (P(z > 0) ~ 0.65): from a lower start, Adam turns the small but
constant L0 gradient of a gate that happens to sample z = 0 a few times into full-size steps down,
and a needed neuron can sink out of reach of the (sporadic, larger) task gradient.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mmneuron_jax.io.progress import Progress
from mmneuron_jax.models.base import forward

BETA, GAMMA, ZETA = 2.0 / 3.0, -0.1, 1.1


def sample_gates(log_alpha, key):
  """Hard-concrete sample: float[L, F] log_alpha -> gates in [0, 1] (exact 0 and 1 have mass)."""
  u = jax.random.uniform(key, log_alpha.shape, minval=1e-6, maxval=1.0 - 1e-6)
  s = jax.nn.sigmoid((jnp.log(u) - jnp.log1p(-u) + log_alpha) / BETA)
  return jnp.clip(s * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def deterministic_gates(log_alpha):
  """The test-time gate: clip(sigmoid(log_alpha) * (zeta - gamma) + gamma, 0, 1)."""
  return jnp.clip(jax.nn.sigmoid(log_alpha) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def l0_probability(log_alpha):
  """P(gate != 0) per neuron, the L0 penalty's summand."""
  return jax.nn.sigmoid(log_alpha - BETA * np.log(-GAMMA / ZETA))


def group_losses(logits, input_ids, answer_mask):
  """-> (unlikelihood float32[B], nll float32[B]): per-sample means over answer tokens of
  -log(1 - p) and -log p. For p >= 1/2, log(1 - p) = logsumexp of the other logits - logsumexp
  of all, so it neither saturates nor loses its gradient at p ~ 1."""
  logits = logits[:, :-1].astype(jnp.float32)
  ids = input_ids[:, 1:, None].astype(jnp.int32)
  mask = answer_mask[:, 1:]
  total = jax.nn.logsumexp(logits, axis=-1)
  target = jnp.take_along_axis(logits, ids, axis=-1)[..., 0]
  is_target = jnp.arange(logits.shape[-1]) == ids
  others = jax.nn.logsumexp(jnp.where(is_target, -jnp.inf, logits), axis=-1)
  n = jnp.maximum(mask.sum(axis=1), 1)
  nll = total - target
  small = jnp.minimum(-nll, -0.7)  # p < 1/2: -log1p(-p) is exact there; p >= 1/2: lse(others) - lse(all)
  unlikely = jnp.where(-nll < -0.7, -jnp.log1p(-jnp.exp(small)), total - others)
  return jnp.sum(jnp.where(mask, unlikely, 0.0), axis=1) / n, jnp.sum(jnp.where(mask, nll, 0.0), axis=1) / n


def _weighted_mean(values, weights):
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def objective(log_alphas, key, module, params, batch, answer_mask, target, keep, keep_weight, l0_weight):
  """log_alphas {module: float32[G, L, F]}, target / keep float32[G, B] sample weights of each
  group's objective -> (sum over groups of the loss in the module docstring, parts float32[G]).
  The groups are vmapped: what does not depend on the masks (e.g. an unmasked vision tower) runs once."""

  def one(las, k, tgt, kp):
    keys = jax.random.split(k, len(las))
    masks = {m: 1.0 - sample_gates(la, kk) for (m, la), kk in zip(sorted(las.items()), keys)}
    logits = forward(module, params, batch, masks).logits
    unlikely, nll = group_losses(logits, batch["input_ids"], answer_mask)
    l0 = sum(jnp.sum(l0_probability(la)) for la in las.values())
    parts = {"target_unlikelihood": _weighted_mean(unlikely, tgt), "keep_nll": _weighted_mean(nll, kp),
             "expected_removed": l0}
    return parts["target_unlikelihood"] + keep_weight * parts["keep_nll"] + l0_weight * l0, parts

  losses, parts = jax.vmap(one)(log_alphas, jax.random.split(key, target.shape[0]), target, keep)
  return jnp.sum(losses), dict(parts, loss=losses)


def _step_fn(module, optimizer):
  @functools.partial(jax.jit, static_argnames=("keep_weight", "l0_weight"))
  def step(log_alphas, opt_state, key, params, batch, answer_mask, target, keep, keep_weight, l0_weight):
    grads, parts = jax.grad(objective, has_aux=True)(
        log_alphas, key, module, params, batch, answer_mask, target, keep, keep_weight, l0_weight)
    updates, opt_state = optimizer.update(grads, opt_state, log_alphas)
    return optax.apply_updates(log_alphas, updates), opt_state, parts
  return step


def learn_removal(model, params, batches, modules=("llm",), steps: int = 200, lr: float = 0.1,
                  keep_weight: float = 1.0, l0_weight: float = 0.02, init: float = -1.0, seed: int = 0,
                  remat: bool = True, progress: bool = True, desc: str = "learned masks (steps)"):
  """Optimise removal gates for G target groups at once (independent objectives, summed).

  batches: list of {'batch': HF-named arrays (as `model.apply`), 'answer_mask': bool[B, T],
  'target': float[G, B] (1 = a sample of group g's target), 'keep': float[G, B] (1 = a sample
  group g must keep, 0 = padding)}; step i uses batches[i % len]. Returns ({module: log_alpha
  float32[G, L, F]}, history {'loss', 'target_unlikelihood', 'keep_nll', 'expected_removed'}:
  float[steps, G])."""
  modules = tuple(sorted(modules))
  for m in modules:
    if m not in model.probe_modules:
      raise KeyError(f"learn_removal: unknown module {m!r}; probe modules are {sorted(model.probe_modules)}")
  if not batches:
    raise ValueError("learn_removal needs at least one batch")
  prepared = []
  for i, b in enumerate(batches):
    device = model.device_batch(b["batch"])
    am = np.asarray(b["answer_mask"], bool)
    if am.shape != tuple(device["input_ids"].shape) or am[:, 0].any():
      raise ValueError(f"batches[{i}]['answer_mask'] has shape {am.shape} (input_ids {device['input_ids'].shape}) "
                       "or marks position 0")
    target, keep = np.atleast_2d(b["target"]), np.atleast_2d(b["keep"])
    if target.shape != keep.shape or target.shape[1] != am.shape[0]:
      raise ValueError(f"batches[{i}]: 'target' {target.shape} and 'keep' {keep.shape} must both be [G, B={am.shape[0]}]")
    prepared.append((device, jnp.asarray(am), jnp.asarray(target, jnp.float32), jnp.asarray(keep, jnp.float32)))
  groups = prepared[0][2].shape[0]
  optimizer = optax.adam(lr)
  key = ("learned_masks", modules, float(lr), bool(remat))
  step = model.cached(key, lambda: _step_fn(model.module.clone(capture=(), remat=bool(remat)), optimizer))
  log_alphas = {m: jnp.full((groups,) + tuple(model.probe_modules[m]), init, jnp.float32) for m in modules}
  opt_state = optimizer.init(log_alphas)
  rng = jax.random.PRNGKey(seed)
  history = {k: [] for k in ("loss", "target_unlikelihood", "keep_nll", "expected_removed")}
  bar = Progress(steps, desc) if progress else None
  for i in range(steps):
    rng, sub = jax.random.split(rng)
    device, am, target, keep = prepared[i % len(prepared)]
    log_alphas, opt_state, parts = step(log_alphas, opt_state, sub, params, device, am, target, keep,
                                        keep_weight=float(keep_weight), l0_weight=float(l0_weight))
    for k in history:
      history[k].append(np.asarray(parts[k]))
    if bar:
      bar.update()
  if bar:
    bar.close()
  return log_alphas, {k: np.stack(v) for k, v in history.items()}


def removed(log_alpha, threshold: float = 0.5) -> np.ndarray:
  """bool[L, F]: neurons whose deterministic removal gate exceeds `threshold`."""
  return np.asarray(deterministic_gates(jnp.asarray(log_alpha)) > threshold)


def learn_group_sets(model, params, batches, sample_groups, num_groups: int, modules=("llm",), **kwargs):
  """One removal mask per group, all groups optimised together: -> ({module: bool[G, L, F]}, history).

  Group g's objective targets its own samples and keeps every other group's.
  sample_groups: per batch int[B] group of each row (-1 = padding row). kwargs: `learn_removal`'s."""
  group_batches = []
  for b, s in zip(batches, sample_groups):
    s = np.asarray(s)[None]
    g = np.arange(num_groups)[:, None]
    group_batches.append(dict(b, target=(s == g).astype(np.float32), keep=((s >= 0) & (s != g)).astype(np.float32)))
  log_alphas, history = learn_removal(model, params, group_batches, modules, **kwargs)
  return {m: removed(la) for m, la in log_alphas.items()}, history
