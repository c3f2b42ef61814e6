"""The one jit path: `jit_step(fn, mesh, kinds, out_shardings)` is `jax.jit(fn)` without a mesh
and a jit with explicit in/out shardings on one, built once per input signature."""
from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from mmneuron_jax.sharding.placement import batch_shardings, put, replicated, replicated_to_host
from mmneuron_jax.sharding.rules import DEFAULT_RULES, param_shardings

# How each positional argument of a step is placed on a mesh.
KINDS = ("params", "batch", "replicated", "static")


def _signature(tree):
  leaves, treedef = jax.tree_util.tree_flatten(tree)
  return treedef, tuple((tuple(np.shape(x)), str(getattr(x, "dtype", type(x)))) for x in leaves)


def _check_kinds(kinds):
  unknown = [k for k in kinds if k not in KINDS]
  if unknown:
    raise ValueError(f"jit_step: unknown argument kinds {unknown}; known: {KINDS}")


class ShardedStep:
  """`fn(*args)` jitted on `mesh` with explicit shardings, built once per input signature.

  kinds[i] places args[i]: 'params' per `rules`, 'batch' split on its batch axis
  (`placement.batch_shardings`), 'replicated', or 'static' (hashable, not traced).
  out: `out_shardings(abstract_out, mesh) -> shardings` (default: all replicated). Host arrays are
  placed before the call; arrays already placed as asked are not moved. Replicated results of a
  mesh spanning processes come back as this host's numpy copy (`replicated_to_host`).
  """

  def __init__(self, fn, mesh: Mesh, kinds: Sequence[str], out_shardings=None, rules=DEFAULT_RULES):
    _check_kinds(kinds)
    self.fn, self.mesh, self.kinds, self.rules = fn, mesh, tuple(kinds), rules
    self.out_rule = out_shardings or (lambda out, mesh: jax.tree_util.tree_map(lambda _: replicated(mesh), out))
    self._compiled = {}

  def _in_sharding(self, kind, a):
    if kind == "params":
      return param_shardings(a, self.mesh, self.rules)
    if kind == "batch":
      return batch_shardings(a, self.mesh)
    return jax.tree_util.tree_map(lambda _: replicated(self.mesh), a)

  def _bind(self, static):
    """fn of the traced arguments only, the static ones fixed."""
    def bound(*traced):
      it = iter(traced)
      return self.fn(*[static[i] if i in static else next(it) for i in range(len(self.kinds))])
    return bound

  def shardings(self, *args):
    """-> (in_shardings of the traced arguments, out_shardings) for these inputs."""
    static = {i: a for i, (k, a) in enumerate(zip(self.kinds, args)) if k == "static"}
    traced = [(k, a) for k, a in zip(self.kinds, args) if k != "static"]
    ins = tuple(self._in_sharding(k, a) for k, a in traced)
    abstract = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), [a for _, a in traced])
    out = jax.eval_shape(self._bind(static), *abstract)
    return ins, self.out_rule(out, self.mesh)

  def __call__(self, *args):
    if len(args) != len(self.kinds):
      raise TypeError(f"jit_step: the step takes {len(self.kinds)} arguments ({', '.join(self.kinds)}), "
                      f"got {len(args)}")
    args = tuple(a if k == "static" else
                 jax.tree_util.tree_map(lambda x: x if isinstance(x, jax.Array) else np.asarray(x), a)
                 for k, a in zip(self.kinds, args))
    static = {i: a for i, (k, a) in enumerate(zip(self.kinds, args)) if k == "static"}
    traced = tuple(a for k, a in zip(self.kinds, args) if k != "static")
    key = (tuple(sorted(static.items())), _signature(traced))
    if key not in self._compiled:
      ins, outs = self.shardings(*args)
      self._compiled[key] = (jax.jit(self._bind(static), in_shardings=ins, out_shardings=outs), ins)
    jitted, ins = self._compiled[key]
    placed = [jax.tree_util.tree_map(put, a, s) for a, s in zip(traced, ins)]
    return replicated_to_host(jitted(*placed))


def jit_step(fn, mesh: Mesh | None = None, kinds: Sequence[str] = (), out_shardings=None, rules=DEFAULT_RULES):
  """The jitted `fn(*args)`: `jax.jit(fn, static_argnums=<the 'static' kinds>)` when `mesh` is
  None, else a `ShardedStep` on `mesh` (kinds: one of `KINDS` per positional argument: params
  per `rules`, batch arrays split over ('data', 'fsdp'), the rest replicated; out_shardings:
  `(abstract_out, mesh) -> shardings`, default replicated; unused without a mesh). Same numbers either way (up to float
  reduction order)."""
  kinds = tuple(kinds)
  _check_kinds(kinds)
  if mesh is None:
    return jax.jit(fn, static_argnums=tuple(i for i, k in enumerate(kinds) if k == "static"))
  return ShardedStep(fn, mesh, kinds, out_shardings, rules)
