"""Batches onto a mesh (split on their batch axis) and results back to the host, on one process
or several."""
from typing import Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mmneuron_jax.sharding.mesh import useful_axes, axis_size
from mmneuron_jax.sharding.rules import DEFAULT_RULES, LOGICAL_AXES, param_shardings, path_str

BATCH_AXES = tuple(LOGICAL_AXES["batch"])

# Batch-array keys whose batch axis is not the first one (counted from the end: -2 of [3, B, T]).
BATCH_AXIS_FROM_END = {"position_ids": -2}


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array (outputs reduced over the batch, masks)."""
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over ('data', 'fsdp'); other axes replicated."""
  return NamedSharding(mesh, P(useful_axes(mesh, BATCH_AXES)))


def batch_sharding_for(shape: Sequence[int], mesh: Mesh, axis: int = 0) -> NamedSharding:
  """Split `axis` of an array of `shape` over ('data', 'fsdp') if divisible, else over 'data' or
  'fsdp' alone, else replicate."""
  shape = tuple(shape)
  if not shape:
    return replicated(mesh)
  axis = axis % len(shape)
  for axes in (BATCH_AXES, ("data",), ("fsdp",)):
    axes = useful_axes(mesh, axes)
    if axes is not None and shape[axis] % axis_size(mesh, axes) == 0:
      return NamedSharding(mesh, P(*([None] * axis + [axes])))
  return replicated(mesh)


def _batch_axis(path, x) -> int:
  key = path_str(path).split("/")[-1] if path else ""
  from_end = BATCH_AXIS_FROM_END.get(key)
  if from_end is not None and np.ndim(x) >= -from_end:
    return np.ndim(x) + from_end
  return 0


def batch_shardings(tree, mesh: Mesh, axis: int | None = None):
  """Pytree of shardings for arrays carrying a batch axis (`axis`, default: 0 or per key)."""
  return jax.tree_util.tree_map_with_path(
      lambda path, x: batch_sharding_for(np.shape(x), mesh, _batch_axis(path, x) if axis is None else axis), tree)


def spans_processes(mesh: Mesh) -> bool:
  """True when some device of `mesh` belongs to another process."""
  return any(d.process_index != jax.process_index() for d in mesh.devices.flat)


def put(x, sharding: NamedSharding):
  """Place one array. On a mesh spanning several processes `x` is the *global* array (the same
  on every host, e.g. every host prepares the same global batch) and each process fills only
  its own devices' slices."""
  if isinstance(x, jax.Array) and x.sharding == sharding:
    return x
  if not spans_processes(sharding.mesh):
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
  return jax.tree_util.tree_map(put, batch, batch_shardings(batch, mesh, axis))


def to_host(tree):
  """jax.Arrays -> numpy on every process: replicated arrays from a local copy, arrays split
  across hosts gathered from all of them (a collective: every process must call it)."""
  def one(x):
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
      return np.asarray(x)
    if x.is_fully_replicated:
      return np.asarray(x.addressable_data(0))
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return jax.tree_util.tree_map(one, tree)


def replicated_to_host(tree):
  """Replicated jax.Arrays of a mesh spanning processes -> numpy from this host's copy (no
  communication); everything else unchanged. Single-process arrays are left as they are."""
  def one(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable and x.is_fully_replicated:
      return np.asarray(x.addressable_data(0))
    return x
  return jax.tree_util.tree_map(one, tree)


def place_params(params, mesh: Mesh, rules=DEFAULT_RULES):
  """Move existing params onto `mesh` per `rules` (a no-op for params loaded with them)."""
  return jax.device_put(params, param_shardings(params, mesh, rules))
