"""Meshes, logical sharding rules and the sharded (jitted, explicit in/out shardings) steps.

One code path for 1 CPU device (a 1x1x1 mesh), 8 fake CPU devices, one GPU or a TPU pod:

    mesh = make_mesh(data=2, tensor=4)                  # or mesh_from_spec("2,1,4"), mesh_from_config(config)
    model = load_on_mesh(path, mesh)                    # each device reads only its slices
    # (= load_hf(path, shardings=shardings_for_config(read_config(path), mesh)).on_mesh(mesh))
    out = model.apply(model.params, batch, masks=..., probe=..., lens=...)   # jit with in/out shardings
    tokens = model.generate(model.params, batch, max_new_tokens=32)
    g = analysis.importance.grad_importance(model, model.params, batch, answer_mask)
    step = stats_step(model, num_groups)                # = analysis.stats.make_step off a mesh

Mesh axes: `data` (batch), `fsdp` (batch and parameter in-dims), `tensor` (vocab, heads, MLP
width). Params follow logical axes: `PARAM_AXES` maps a regex on the param path
('llm/layers/mlp/gate/kernel') to logical names of the param's *trailing* dims ('embed', 'mlp'),
`LOGICAL_AXES` maps logical names to mesh axes; `DEFAULT_RULES = logical_rules()` is the
resolved (regex, mesh spec) table every function takes as `rules`. Leading dims (the scanned
layer axis `L`) stay replicated, and any dim not divisible by its mesh axes' size falls back to
replicated, so every param of every family gets a valid sharding (unknown paths: replicated).

Sharding never changes what is computed (jit has global semantics); it changes where. Results
equal the single-device ones up to float reduction order (fp32: ~1e-6 relative).

Inputs: every batch array (input_ids [B, T], position_ids [3, B, T], pixel_values [N, ...],
probe arrays, lens positions) is split on its batch axis over LOGICAL_AXES['batch'] =
('data', 'fsdp') when divisible, else over 'data' or 'fsdp' alone, else replicated; masks are
replicated. Outputs: probe results and logit-lens readouts (small) come back replicated; logits
[B, T, V], captured neurons [L, B, T, F] and generated tokens stay split on their batch axis
(`replicated_outputs=True` replicates everything). On a mesh spanning several processes every
host passes the same global batch; `Model` methods return replicated results as host arrays and
`to_host` gathers the rest; `mmneuron_jax.distributed` has the per-host alternative for
statistics (a per-host mesh, `host_shard`, `reduce_stats_across_hosts`).
"""
import functools
import re
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mmneuron_jax.models.base import mask_arrays

AXES = ("data", "fsdp", "tensor")

# Logical axes -> mesh axes (a name, a tuple of names, or None = replicated). Swap entries for
# another layout, e.g. {"embed": None} for pure tensor parallelism, then `logical_rules(...)`.
LOGICAL_AXES: dict[str, Any] = {
    "batch": ("data", "fsdp"),   # activations and inputs: the batch axis
    "embed": "fsdp",             # model width D of params (ZeRO-3 style; gathered per layer)
    "vocab": "tensor",           # V of the embedding and unembedding
    "heads": "tensor",           # attention heads (q/k/v out-dim, o in-dim)
    "mlp": "tensor",             # MLP width F (the neurons)
    "layers": None,              # the scanned layer axis L
}

# (regex searched in the '/'-joined param path, logical names of the param's *trailing* dims).
# First match wins; dims before the named ones (the scanned layer axis) stay replicated. Paths
# cover every family: decoders (llama / qwen2), CLIP, EVA and Qwen2-ViT towers, the Q-Former,
# the LLaVA projector, the Qwen2-VL patch merger, Whisper-style audio encoders.
PARAM_AXES: tuple[tuple[str, tuple], ...] = (
    (r"(^|/)(embed_tokens|word_embeddings)(/embedding)?$", ("vocab", "embed")),   # [V, D]
    (r"(^|/)lm_head(/kernel)?$", ("embed", "vocab")),                            # [D, V]
    (r"(^|/)(q|k|v|qkv|query|key|value)/kernel$", ("embed", "heads")),           # [L?, D, H*hd]
    (r"(^|/)(gate|up|fc1)/kernel$", ("embed", "mlp")),                           # [L?, D, F]
    (r"(^|/)(o|proj|out_proj)/kernel$", ("heads", "embed")),                     # [L?, H*hd, D]
    (r"(^|/)(down|fc2)/kernel$", ("mlp", "embed")),                              # [L?, F, D]
    (r"(^|/)(q|k|v|qkv|query|key|value)/bias$", ("heads",)),                     # [L?, H*hd]
    (r"(^|/)(gate|up|fc1)/bias$", ("mlp",)),                                     # [L?, F]
    (r"(^|/)(language_projection|projector)/kernel$", (None, "embed")),          # [D_tower, D]
    (r".*", ()),                                                                 # norms, embeddings: replicated
)


def logical_rules(param_axes=PARAM_AXES, logical=None) -> tuple[tuple[str, tuple], ...]:
  """(regex, logical names) rules + a logical -> mesh map (default `LOGICAL_AXES`) -> the
  (regex, mesh-axis spec) rules every function here takes as `rules`."""
  logical = LOGICAL_AXES if logical is None else {**LOGICAL_AXES, **logical}
  out = []
  for pattern, names in param_axes:
    unknown = [n for n in names if n is not None and n not in logical]
    if unknown:
      raise KeyError(f"logical_rules: rule {pattern!r} names unknown logical axes {unknown}; known: "
                     f"{sorted(logical)}")
    out.append((pattern, tuple(None if n is None else logical[n] for n in names)))
  return tuple(out)


# Column-parallel kernels [.., in, out]: in-dim on fsdp, out-dim (heads, MLP width, vocab) on
# tensor; row-parallel kernels (o, proj, down, fc2) [.., F, D]: the MLP width / heads on tensor.
DEFAULT_RULES: tuple[tuple[str, tuple], ...] = logical_rules()
BATCH_AXES = tuple(LOGICAL_AXES["batch"])

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


def mesh_from_spec(spec: str, devices: Sequence | None = None) -> Mesh | None:
  """'data,fsdp,tensor' sizes (e.g. '-1,1,1': every device on data; '2,1,4' or '2x1x4') ->
  `make_mesh`; '' or 'none' -> None (no mesh: the plain single-device jit path)."""
  text = str(spec or "").strip().lower()
  if text in ("", "none"):
    return None
  try:
    sizes = [int(v) for v in text.replace("x", ",").split(",")]
  except ValueError:
    sizes = []
  if len(sizes) != 3:
    raise ValueError(f"mesh={spec!r}: expected three comma-separated sizes 'data,fsdp,tensor' (one may be -1), "
                     "e.g. '-1,1,1' or '2,1,4'; or '' for no mesh")
  return make_mesh(*sizes, devices=devices)


def mesh_from_config(config, devices: Sequence | None = None) -> Mesh | None:
  """The run config's `mesh` field (see `mesh_from_spec`); a config without one -> None."""
  spec = config.get("mesh", "") if hasattr(config, "get") else getattr(config, "mesh", "")
  return mesh_from_spec(spec, devices)


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


def abstract_params(config: dict, dtype: str = "float32"):
  """Pytree of jax.ShapeDtypeStruct for any registered family's params (`jax.eval_shape` of the
  family module's init: no memory, no weights). The family file's `init_inputs(cfg)` supplies
  dummy inputs when it has one (Qwen2-VL, ...); else `models.shapes.abstract_params`."""
  import sys
  from mmneuron_jax.models.registry import family_for
  from mmneuron_jax.nn.policy import Policy
  family = family_for(config)
  init_inputs = getattr(sys.modules.get(family.module.__module__), "init_inputs", None)
  if init_inputs is None:
    from mmneuron_jax.models import shapes
    return shapes.abstract_params(config, dtype)
  cfg = family.parse_config(config)
  module = family.module(cfg, Policy(dtype, dtype))
  args, kwargs = init_inputs(cfg)
  return jax.eval_shape(lambda key: module.init(key, *args, **kwargs)["params"], jax.random.PRNGKey(0))


def shardings_for_config(config: dict, mesh: Mesh, dtype: str = "float32", rules=DEFAULT_RULES):
  """Param shardings for a HF config dict of any family (shapes from `abstract_params`)."""
  return param_shardings(abstract_params(config, dtype), mesh, rules)


def place_params(params, mesh: Mesh, rules=DEFAULT_RULES):
  """Move existing params onto `mesh` per `rules` (a no-op for params loaded with them)."""
  return jax.device_put(params, param_shardings(params, mesh, rules))


def load_on_mesh(path: str, mesh: Mesh | None, rules=DEFAULT_RULES, **load_kwargs):
  """A HF checkpoint dir (`load_hf`) or a `convert`ed one (`load`: it holds mmneuron.json) ->
  `Model` on `mesh`: every param is built by `jax.make_array_from_callback` from its slices
  (safetensors slices / orbax restore against sharded abstract targets), so no host ever holds
  a whole sharded tensor. mesh None -> the plain load. load_kwargs: dtype, compute_dtype, ..."""
  import os
  import mmneuron_jax
  from mmneuron_jax.api import read_config
  from mmneuron_jax.io.checkpoint import META_FILE
  converted = os.path.exists(os.path.join(path, META_FILE))
  if converted:
    load_kwargs.pop("dtype", None)  # a converted checkpoint keeps the dtype it was saved with
  if mesh is None:
    return mmneuron_jax.load(path, **load_kwargs) if converted else mmneuron_jax.load_hf(path, **load_kwargs)
  if converted:
    from mmneuron_jax.io.checkpoint import abstract_params as saved_shapes
    shardings = param_shardings(saved_shapes(path), mesh, rules)
    model = mmneuron_jax.load(path, shardings=shardings, **load_kwargs)
  else:
    shardings = shardings_for_config(read_config(path), mesh, load_kwargs.get("dtype", "float32"), rules)
    model = mmneuron_jax.load_hf(path, shardings=shardings, **load_kwargs)
  return model.on_mesh(mesh, rules)


def load_for_config(path: str, config):
  """The tasks' model loading: `load_on_mesh` on the run config's `mesh`, with its `model.dtype`,
  `model.compute_dtype`, `model.attention` and `model.fp32_matmul`."""
  m = config.model
  return load_on_mesh(path, mesh_from_config(config), dtype=m.dtype, compute_dtype=m.compute_dtype or None,
                      attention=m.get("attention", "xla"), fp32_matmul=m.get("fp32_matmul", "highest"))


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


def replicated_to_host(tree):
  """Replicated jax.Arrays of a mesh spanning processes -> numpy from this host's copy (no
  communication); everything else unchanged. Single-process arrays are left as they are."""
  def one(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable and x.is_fully_replicated:
      return np.asarray(x.addressable_data(0))
    return x
  return jax.tree_util.tree_map(one, tree)


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


def describe(params, mesh: Mesh, rules=DEFAULT_RULES) -> list[tuple[str, tuple, Any]]:
  """[(path, shape, PartitionSpec)] for every param, for logs and docs."""
  out = []
  for path, x in jax.tree_util.tree_flatten_with_path(params)[0]:
    out.append((_path_str(path), tuple(x.shape), spec_for(_path_str(path), x.shape, mesh, rules)))
  return out
