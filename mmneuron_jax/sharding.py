"""Meshes, logical sharding rules and the sharded (jitted, explicit in/out shardings) steps.

One code path for 1 CPU device (a 1x1x1 mesh), 8 fake CPU devices, one GPU or a TPU pod:

    mesh = make_mesh(data=2, tensor=4)
    shardings = param_shardings(abstract_params(config), mesh)          # models.shapes
    model = mmneuron_jax.load_hf(path, shardings=shardings)             # each device reads its slice
    step = sharded_stats_step(model, num_groups, mesh)
    stats = step(model.params, batch, groups)                           # replicated [L, G, F] totals

Mesh axes: `data` (batch), `fsdp` (batch and parameter in-dims), `tensor` (vocab, heads, MLP
width). Params follow `DEFAULT_RULES`: a regex on the param path ('llm/layers/mlp/gate/kernel')
picks a spec for the param's *trailing* dims; leading dims (the scanned layer axis `L`) stay
replicated, and any dim not divisible by its mesh axes' size falls back to replicated, so every
param of every family gets a valid sharding (unknown paths are replicated).

Sharding never changes what is computed (jit has global semantics); it changes where. Results
equal the single-device ones up to float reduction order (fp32: ~1e-6 relative).

Inputs: every batch array (input_ids [B, T], pixel_values [N, ...], probe groups, lens positions)
is split on its batch axis over ('data', 'fsdp') when divisible, else over 'data' or 'fsdp'
alone, else replicated. Outputs: probe results (reduced over the batch) come back replicated;
per-example outputs (logits [B, T, V], lens [L, B, P, ...], captured [L, B, T, F]) stay split on
their batch axis (`replicated_outputs=True` replicates everything). On a mesh spanning several
processes every host passes the same global batch and reads results with `to_host`
(`shard_batch`); `mmneuron_jax.distributed` has the per-host alternative for statistics.
"""
import functools
import re
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

# (regex searched in the '/'-joined param path, spec of the trailing dims). First match wins.
# Column-parallel kernels [.., in, out]: in-dim on fsdp, out-dim (heads, MLP width, vocab) on
# tensor; row-parallel kernels (o, down, fc2) [.., F, D]: the MLP width / heads on tensor.
DEFAULT_RULES: tuple[tuple[str, tuple], ...] = (
    (r"(^|/)embed_tokens(/embedding)?$", ("tensor", "fsdp")),     # [V, D]
    (r"(^|/)lm_head(/kernel)?$", ("fsdp", "tensor")),             # [D, V]
    (r"(^|/)(q|k|v|qkv|gate|up|fc1)/kernel$", ("fsdp", "tensor")),  # [L?, D, F]
    (r"(^|/)(o|down|fc2)/kernel$", ("tensor", "fsdp")),           # [L?, F, D]
    (r"(^|/)(q|k|v|qkv|gate|up|fc1)/bias$", ("tensor",)),         # [L?, F]
    (r".*", ()),                                                  # norms, biases, embeddings: replicated
)

# Batch-array keys whose batch axis is not the first one (counted from the end: -2 of [3, B, T]).
BATCH_AXIS_FROM_END = {"position_ids": -2}


# -- meshes ----------------------------------------------------------------------------------

def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1, devices: Sequence | None = None) -> Mesh:
  """A ('data', 'fsdp', 'tensor') mesh over `devices` (default: all of them, every process).

  One size may be -1 (fills the rest). Built with `jax.sharding.Mesh` (auto axis types, so
  jit's sharding propagation applies on every jax version).
  """
  devices = list(jax.devices() if devices is None else devices)
  sizes = [data, fsdp, tensor]
  if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
    raise ValueError(f"make_mesh: sizes data={data}, fsdp={fsdp}, tensor={tensor}; each must be >= 1, "
                     "at most one may be -1")
  known = int(np.prod([s for s in sizes if s != -1]))
  if -1 in sizes:
    if len(devices) % known:
      raise ValueError(f"make_mesh: {len(devices)} devices are not divisible by fsdp*tensor*data={known}")
    sizes[sizes.index(-1)] = len(devices) // known
  if int(np.prod(sizes)) != len(devices):
    raise ValueError(f"make_mesh: data*fsdp*tensor = {'*'.join(map(str, sizes))} = {int(np.prod(sizes))} "
                     f"but {len(devices)} devices were given")
  try:  # topology-aware order on TPU/GPU; plain order elsewhere
    from jax.experimental import mesh_utils
    grid = mesh_utils.create_device_mesh(tuple(sizes), devices=devices)
  except Exception:  # noqa: BLE001 - any layout failure: fall back to the given order
    grid = np.asarray(devices, dtype=object).reshape(sizes)
  axis_type = getattr(jax.sharding, "AxisType", None)  # jax >= 0.5; before, every axis is auto
  if axis_type is None:
    return Mesh(grid, AXES)
  return Mesh(grid, AXES, axis_types=(axis_type.Auto,) * len(AXES))


def axis_size(mesh: Mesh, axes) -> int:
  """Product of the sizes of `axes` (a name, a tuple of names or None)."""
  if axes is None:
    return 1
  axes = (axes,) if isinstance(axes, str) else tuple(axes)
  return int(np.prod([mesh.shape[a] for a in axes]))


def _useful(mesh: Mesh, axes):
  """Drop size-1 axes: None, a name or a tuple of names (None if nothing is left)."""
  if axes is None:
    return None
  names = (axes,) if isinstance(axes, str) else tuple(axes)
  names = tuple(a for a in names if mesh.shape[a] > 1)
  return None if not names else names[0] if len(names) == 1 else names


# -- params ----------------------------------------------------------------------------------

def _path_str(path) -> str:
  parts = []
  for k in path:
    for attr in ("key", "name", "idx"):
      if hasattr(k, attr):
        parts.append(str(getattr(k, attr)))
        break
    else:
      parts.append(str(k))
  return "/".join(parts)


def spec_for(path: str, shape: Sequence[int], mesh: Mesh, rules=DEFAULT_RULES) -> P:
  """PartitionSpec of one param: the first rule whose regex matches `path`, right-aligned on
  `shape`; a dim whose size is not divisible by its axes (or reuses an axis) is replicated."""
  shape = tuple(shape)
  for pattern, trailing in rules:
    if re.search(pattern, path):
      break
  else:
    trailing = ()
  trailing = tuple(trailing)[-len(shape):] if shape else ()
  spec = [None] * (len(shape) - len(trailing)) + list(trailing)
  used = set()
  for i, axes in enumerate(spec):
    axes = _useful(mesh, axes)
    names = () if axes is None else (axes,) if isinstance(axes, str) else axes
    if axes is None or shape[i] % axis_size(mesh, axes) or used & set(names):
      spec[i] = None
    else:
      spec[i] = axes
      used |= set(names)
  while spec and spec[-1] is None:
    spec.pop()
  return P(*spec)


def param_specs(abstract_params, mesh: Mesh, rules=DEFAULT_RULES):
  """Pytree of PartitionSpec with the params' structure (leaves need only `.shape`)."""
  return jax.tree_util.tree_map_with_path(lambda path, x: spec_for(_path_str(path), x.shape, mesh, rules),
                                          abstract_params)


def param_shardings(abstract_params, mesh: Mesh, rules=DEFAULT_RULES):
  """Pytree of NamedSharding for `abstract_params` (e.g. `models.shapes.abstract_params(config)`,
  or real params); pass it to `load_hf(path, shardings=)` / `load(out_dir, shardings=)`."""
  return jax.tree_util.tree_map(lambda s: NamedSharding(mesh, s), param_specs(abstract_params, mesh, rules),
                                is_leaf=lambda x: isinstance(x, P))


def shardings_for_config(config: dict, mesh: Mesh, dtype: str = "float32", rules=DEFAULT_RULES):
  """Param shardings for a HF config dict (shapes from `jax.eval_shape`, no weights)."""
  from mmneuron_jax.models.shapes import abstract_params
  return param_shardings(abstract_params(config, dtype), mesh, rules)


def place_params(params, mesh: Mesh, rules=DEFAULT_RULES):
  """Move existing params onto `mesh` per `rules` (a no-op for params loaded with them)."""
  return jax.device_put(params, param_shardings(params, mesh, rules))


# -- batches and outputs ---------------------------------------------------------------------

def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array (outputs reduced over the batch, masks)."""
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over ('data', 'fsdp'); other axes replicated."""
  return NamedSharding(mesh, P(_useful(mesh, BATCH_AXES)))


def batch_sharding_for(shape: Sequence[int], mesh: Mesh, axis: int = 0) -> NamedSharding:
  """Split `axis` of an array of `shape` over ('data', 'fsdp') if divisible, else over 'data' or
  'fsdp' alone, else replicate."""
  shape = tuple(shape)
  if not shape:
    return replicated(mesh)
  axis = axis % len(shape)
  for axes in (BATCH_AXES, ("data",), ("fsdp",)):
    axes = _useful(mesh, axes)
    if axes is not None and shape[axis] % axis_size(mesh, axes) == 0:
      return NamedSharding(mesh, P(*([None] * axis + [axes])))
  return replicated(mesh)


def _batch_axis(path, x) -> int:
  key = _path_str(path).split("/")[-1] if path else ""
  from_end = BATCH_AXIS_FROM_END.get(key)
  if from_end is not None and np.ndim(x) >= -from_end:
    return np.ndim(x) + from_end
  return 0


def batch_shardings(tree, mesh: Mesh, axis: int | None = None):
  """Pytree of shardings for arrays carrying a batch axis (`axis`, default: 0 or per key)."""
  return jax.tree_util.tree_map_with_path(
      lambda path, x: batch_sharding_for(np.shape(x), mesh, _batch_axis(path, x) if axis is None else axis), tree)


def _spans_processes(mesh: Mesh) -> bool:
  return any(d.process_index != jax.process_index() for d in mesh.devices.flat)


def _put(x, sharding: NamedSharding):
  """Place one array. On a mesh spanning several processes `x` is the *global* array (the same
  on every host, e.g. every host prepares the same global batch) and each process fills only
  its own devices' slices."""
  if isinstance(x, jax.Array) and x.sharding == sharding:
    return x
  if not _spans_processes(sharding.mesh):
    return jax.device_put(x, sharding)
  x = np.asarray(x)
  return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def shard_batch(batch, mesh: Mesh, axis: int | None = None):
  """Host arrays -> jax.Arrays split on their batch axis (see `batch_sharding_for`).

  On a mesh spanning several processes every host passes the same global batch (host-side
  preprocessing such as LLaVA-NeXT's `feature_index` indexes tiles across rows, so rows cannot
  be prepared per host); each host then reads only its devices' rows. For embarrassingly
  parallel statistics prefer a per-host mesh + `distributed.host_shard` +
  `distributed.reduce_stats_across_hosts` (no cross-host traffic until the final sum).
  """
  return jax.tree_util.tree_map(_put, batch, batch_shardings(batch, mesh, axis))


def to_host(tree):
  """jax.Arrays -> numpy on every process: replicated arrays from a local copy, arrays split
  across hosts gathered from all of them (a collective: every process must call it)."""
  from jax.experimental import multihost_utils

  def one(x):
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
      return np.asarray(x)
    if x.is_fully_replicated:
      return np.asarray(x.addressable_data(0))
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return jax.tree_util.tree_map(one, tree)


# -- sharded steps ---------------------------------------------------------------------------

def host_batch(model, batch: dict) -> dict:
  """`model.device_batch` without the device copy: the prepared arrays the forward takes."""
  from mmneuron_jax.models.base import DEVICE_KEYS
  prepared = model.prepare(batch)
  keys = DEVICE_KEYS + tuple(model.module.extra_inputs)
  return {k: prepared[k] for k in keys if prepared.get(k) is not None}


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
  """Output -> logits split on B (axis 0), lens / captured on B (axis 1), probe replicated."""
  def rule(out):
    rep = lambda _: replicated(mesh)
    if replicate:
      return jax.tree_util.tree_map(rep, out)
    return out.replace(
        logits=batch_sharding_for(out.logits.shape, mesh, 0),
        aux=jax.tree_util.tree_map(lambda x: batch_sharding_for(x.shape, mesh, 1), out.aux),
        probe=jax.tree_util.tree_map(rep, out.probe),
        lens=jax.tree_util.tree_map(lambda x: batch_sharding_for(x.shape, mesh, 1), out.lens))
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
    masks = None if masks is None else {k: np.asarray(v, np.float32) for k, v in masks.items()}
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
    masks = None if masks is None else {k: np.asarray(v, np.float32) for k, v in masks.items()}
    groups = {k: np.asarray(v, np.int32) if not isinstance(v, jax.Array) else v for k, v in groups.items()}
    return step(params, host_batch(model, batch), groups, masks)

  fn.step = step
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
    masks = None if masks is None else {k: np.asarray(v, np.float32) for k, v in masks.items()}
    return step(params, host_batch(model, batch), lens, masks)

  fn.step = step
  return fn


def describe(params, mesh: Mesh, rules=DEFAULT_RULES) -> list[tuple[str, tuple, Any]]:
  """[(path, shape, PartitionSpec)] for every param, for logs and docs."""
  out = []
  for path, x in jax.tree_util.tree_flatten_with_path(params)[0]:
    out.append((_path_str(path), tuple(x.shape), spec_for(_path_str(path), x.shape, mesh, rules)))
  return out
