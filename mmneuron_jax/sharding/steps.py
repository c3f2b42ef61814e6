"""Sharded steps: jits with explicit in/out shardings for the forward, the statistics and the
logit lens, built once per input signature."""
import functools
from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from mmneuron_jax.models.base import mask_arrays
from mmneuron_jax.sharding.placement import (_put, _spans_processes, batch_sharding_for, batch_shardings, host_batch,
                                             replicated, replicated_to_host)
from mmneuron_jax.sharding.rules import DEFAULT_RULES, param_shardings


def _signature(tree):
  leaves, treedef = jax.tree_util.tree_flatten(tree)
  return treedef, tuple((tuple(np.shape(x)), str(getattr(x, "dtype", type(x)))) for x in leaves)


class ShardedStep:
  """`fn(params, *args)` jitted with explicit shardings, built once per input signature.

  in: params per `rules`; each of `args` replicated (`kind` 'replicated') or split on its batch
  axis ('batch'). out: `out_shardings(abstract_out) -> shardings` (default: all replicated).
  Host arrays are placed before the call; params already placed per `rules` are not moved.
  """

  def __init__(self, fn, mesh: Mesh, arg_kinds: Sequence[str], out_shardings=None, rules=DEFAULT_RULES):
    self.fn, self.mesh, self.arg_kinds, self.rules = fn, mesh, tuple(arg_kinds), rules
    self.out_rule = out_shardings or (lambda out: jax.tree_util.tree_map(lambda _: replicated(mesh), out))
    self._compiled = {}

  def shardings(self, params, *args):
    """-> (in_shardings tuple, out_shardings) for these inputs."""
    ins = [param_shardings(params, self.mesh, self.rules)]
    for kind, a in zip(self.arg_kinds, args):
      if kind == "batch":
        ins.append(batch_shardings(a, self.mesh))
      elif kind == "replicated":
        ins.append(jax.tree_util.tree_map(lambda _: replicated(self.mesh), a))
      else:
        raise ValueError(f"ShardedStep: unknown argument kind {kind!r}")
    abstract = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype),
                                      (params,) + tuple(args))
    out = jax.eval_shape(self.fn, *abstract)
    return tuple(ins), self.out_rule(out)

  def __call__(self, params, *args):
    if len(args) != len(self.arg_kinds):
      raise TypeError(f"ShardedStep expects {len(self.arg_kinds)} arguments after params, got {len(args)}")
    args = tuple(jax.tree_util.tree_map(lambda x: x if isinstance(x, jax.Array) else np.asarray(x), a) for a in args)
    key = _signature((params,) + args)
    if key not in self._compiled:
      ins, outs = self.shardings(params, *args)
      self._compiled[key] = (jax.jit(self.fn, in_shardings=ins, out_shardings=outs), ins)
    jitted, ins = self._compiled[key]
    placed = [jax.tree_util.tree_map(_put, a, s) for a, s in zip((params,) + args, ins)]
    return jitted(*placed)


def _output_shardings(mesh: Mesh, replicate: bool):
  """Output -> logits split on B (axis 0), captured neurons on B (axis 1); the small probe and
  lens readouts replicated (every host can read them)."""
  def rule(out):
    rep = lambda _: replicated(mesh)
    if replicate:
      return jax.tree_util.tree_map(rep, out)
    return out.replace(
        logits=batch_sharding_for(out.logits.shape, mesh, 0),
        aux=jax.tree_util.tree_map(lambda x: batch_sharding_for(x.shape, mesh, 1), out.aux),
        probe=jax.tree_util.tree_map(rep, out.probe),
        lens=jax.tree_util.tree_map(rep, out.lens))
  return rule


def _forward_fn(module, params, batch, masks, probe, lens):
  from mmneuron_jax.models.base import forward
  return forward(module, params, batch, masks=masks, probe=probe, lens=lens)


def sharded_forward(model, mesh: Mesh, capture=(), remat=False, rules=DEFAULT_RULES,
                    replicated_outputs=False):
  """-> `fn(params, batch, masks=None, probe=None, lens=None) -> Output` on `mesh`.

  batch: HF-named host arrays (prepared as `model.apply` does). masks {module: float[L, F]}
  replicated; probe / lens arrays split on their batch axis. Output as `model.apply`'s.
  """
  for name in capture:
    if name not in model.probe_modules:
      raise KeyError(f"capture {name!r}: unknown module; probe modules are {sorted(model.probe_modules)}")
  module = model.module.clone(capture=tuple(sorted(capture)), remat=remat)
  step = ShardedStep(functools.partial(_forward_fn, module), mesh, ("batch", "replicated", "batch", "batch"),
                     _output_shardings(mesh, replicated_outputs), rules)

  def fn(params, batch, masks=None, probe=None, lens=None):
    model.check_masks(masks)
    masks = mask_arrays(masks, np.asarray)
    return step(params, host_batch(model, batch), masks, probe, lens)

  fn.step = step
  return fn


def _stats_fn(module, num_groups, modules, params, batch, groups, masks):
  from mmneuron_jax.analysis.stats import _stats
  return _stats(module, num_groups, modules, params, batch, groups, masks)


def sharded_stats_step(model, num_groups: int, mesh: Mesh, modules=None, rules=DEFAULT_RULES):
  """-> `step(params, batch, groups, masks=None) -> {module: {'count', 'sum', 'sumsq', 'tokens'}}`,
  as `analysis.stats.make_step` but on `mesh`: groups {module: int32[...]} split on their batch
  axis, results replicated (every host can read them)."""
  modules = tuple(modules or model.probe_modules)
  step = ShardedStep(functools.partial(_stats_fn, model.module, num_groups, modules), mesh,
                     ("batch", "batch", "replicated"), None, rules)

  def fn(params, batch, groups, masks=None):
    model.check_masks(masks)
    masks = mask_arrays(masks, np.asarray)
    groups = {k: np.asarray(v, np.int32) if not isinstance(v, jax.Array) else v for k, v in groups.items()}
    return step(params, host_batch(model, batch), groups, masks)

  fn.step = step
  return fn


def stats_step(model, num_groups: int, modules=None):
  """The statistics step of `model`: `analysis.stats.make_step` (plain jit) when the model has no
  mesh, else `sharded_stats_step` on `model.mesh` (explicit in/out shardings, results
  replicated; host arrays on a mesh spanning processes). Either way
  `step(params, model.device_batch(batch), groups, masks=None) -> {module: {'count', 'sum',
  'sumsq', 'tokens'}}` (count int32[L, G, F], sum / sumsq float32[L, G, F], tokens int32[G])."""
  mesh = getattr(model, "mesh", None)
  if mesh is None:
    from mmneuron_jax.analysis import stats
    return stats.make_step(model, num_groups, modules)
  step = sharded_stats_step(model, num_groups, mesh, modules, model.rules)
  if not _spans_processes(mesh):
    return step

  def fn(params, batch, groups, masks=None):
    return replicated_to_host(step(params, batch, groups, masks))
  fn.step = step.step
  return fn


def _lens_fn(module, params, batch, lens, masks):
  from mmneuron_jax.models.base import forward
  return forward(module, params, batch, masks=masks, lens=lens).lens


def sharded_lens(model, mesh: Mesh, rules=DEFAULT_RULES, replicated_outputs=True):
  """-> `fn(params, batch, lens, masks=None) -> lens readouts {'entropy': float32[L, B, P], ...}`:
  the logit lens through the forward on `mesh`, logits never returned (so never gathered)."""
  step = ShardedStep(functools.partial(_lens_fn, model.module), mesh, ("batch", "batch", "replicated"),
                     None if replicated_outputs else
                     (lambda out: jax.tree_util.tree_map(lambda x: batch_sharding_for(x.shape, mesh, 1), out)),
                     rules)

  def fn(params, batch, lens, masks=None):
    model.check_masks(masks)
    masks = mask_arrays(masks, np.asarray)
    return step(params, host_batch(model, batch), lens, masks)

  fn.step = step
  return fn
