"""Multi-host helpers: start `jax.distributed`, split work over hosts, sum statistics, one writer.

A statistics run over many hosts (a TPU pod, several GPU nodes) is embarrassingly parallel:

    distributed.initialize_from_env()                        # no-op for one process
    mesh = sharding.make_mesh(devices=jax.local_devices())   # this host's devices
    mine = distributed.host_shard(planned_batches)           # a deterministic slice of the global list
    totals = sum of step(batch) over `mine` (host int64 / float64)
    totals = distributed.reduce_stats_across_hosts(totals)   # the same global totals on every host
    if distributed.is_writer(): save(totals)

A model too large for one host instead uses a mesh over all devices (`sharding.make_mesh()`),
params loaded with `load_hf(path, shardings=...)` and global batches (`sharding.shard_batch`).

Environment read by `initialize_from_env` (flags passed as arguments win):
  MMNEURON_COORDINATOR_ADDRESS (or JAX_COORDINATOR_ADDRESS)  host:port of process 0
  MMNEURON_NUM_PROCESSES       (or JAX_NUM_PROCESSES)        number of processes
  MMNEURON_PROCESS_ID          (or JAX_PROCESS_ID)           this process, 0-based
  MMNEURON_LOCAL_DEVICE_IDS    (optional) comma-separated local device ids of this process
  MMNEURON_DISTRIBUTED=auto    let jax detect the cluster (TPU pod VMs, SLURM, Open MPI)
"""
import os
from typing import Sequence

import jax
import numpy as np

ENV_PREFIXES = ("MMNEURON_", "JAX_")


def _env(name: str, env) -> str | None:
  for prefix in ENV_PREFIXES:
    value = env.get(prefix + name)
    if value not in (None, ""):
      return value
  return None


def _is_initialized() -> bool:
  fn = getattr(jax.distributed, "is_initialized", None)
  if fn is not None:
    return bool(fn())
  from jax._src import distributed as _dist  # jax < 0.4.36
  return getattr(_dist.global_state, "client", None) is not None


def _use_gloo_on_cpu():
  """CPU cross-process collectives (process_allgather, multi-host jit on CPU) need gloo; newer
  jax defaults to it, older defaults to 'none'. Other backends are unaffected."""
  try:
    if jax.config.jax_cpu_collectives_implementation in (None, "none"):
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
  except AttributeError:  # an old jax without the option
    pass


def initialize_from_env(coordinator_address: str | None = None, num_processes: int | None = None,
                        process_id: int | None = None, local_device_ids: Sequence[int] | None = None,
                        env=None) -> tuple[int, int]:
  """`jax.distributed.initialize` from arguments, else the environment (see module doc).

  A no-op when nothing asks for more than one process (and when already initialized).
  Must run before anything touches a jax backend. Returns (process_index, process_count).
  """
  env = os.environ if env is None else env
  coordinator_address = coordinator_address or _env("COORDINATOR_ADDRESS", env)
  if num_processes is None and _env("NUM_PROCESSES", env) is not None:
    num_processes = int(_env("NUM_PROCESSES", env))
  if process_id is None and _env("PROCESS_ID", env) is not None:
    process_id = int(_env("PROCESS_ID", env))
  if local_device_ids is None and env.get("MMNEURON_LOCAL_DEVICE_IDS"):
    local_device_ids = [int(i) for i in env["MMNEURON_LOCAL_DEVICE_IDS"].split(",")]
  auto = env.get("MMNEURON_DISTRIBUTED", "").lower() == "auto"
  if _is_initialized():
    return jax.process_index(), jax.process_count()
  if auto and coordinator_address is None:
    _use_gloo_on_cpu()
    jax.distributed.initialize()
    return jax.process_index(), jax.process_count()
  if num_processes is None or num_processes <= 1:
    if coordinator_address is not None and num_processes is None:
      raise ValueError(f"initialize_from_env: coordinator address {coordinator_address!r} given but no "
                       "number of processes (MMNEURON_NUM_PROCESSES / --num_processes)")
    return 0, 1
  if coordinator_address is None or process_id is None:
    raise ValueError(f"initialize_from_env: num_processes={num_processes} needs a coordinator address "
                     f"(got {coordinator_address!r}) and a process id (got {process_id!r})")
  if not 0 <= process_id < num_processes:
    raise ValueError(f"initialize_from_env: process_id={process_id} is not in [0, {num_processes})")
  _use_gloo_on_cpu()
  jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                             process_id=process_id, local_device_ids=local_device_ids)
  return jax.process_index(), jax.process_count()


def host_shard(items: Sequence, process_index: int | None = None, process_count: int | None = None) -> list:
  """This host's contiguous block of a global ordered list: block sizes differ by at most one,
  earlier hosts take the larger blocks; the blocks, in host order, are the list again."""
  index = jax.process_index() if process_index is None else int(process_index)
  count = jax.process_count() if process_count is None else int(process_count)
  if count < 1 or not 0 <= index < count:
    raise ValueError(f"host_shard: process_index={index} is not in [0, {count})")
  items = list(items)
  base, extra = divmod(len(items), count)
  start = index * base + min(index, extra)
  return items[start:start + base + (1 if index < extra else 0)]


def _to_words(x: np.ndarray) -> np.ndarray:
  """Any numeric array -> uint32 words holding its exact bytes (8-byte items: a trailing 2)."""
  if x.dtype.itemsize == 8:
    return np.ascontiguousarray(x).view(np.uint32).reshape(x.shape + (2,))
  if x.dtype.itemsize == 4:
    return np.ascontiguousarray(x).view(np.uint32)
  wide = x.astype(np.float32 if np.issubdtype(x.dtype, np.floating) else np.int32)  # lossless
  return wide.view(np.uint32)


def _from_words(words: np.ndarray, like: np.ndarray) -> np.ndarray:
  """uint32[P, ...] words gathered from P processes -> [P, ...] arrays of `like`'s kind."""
  words = np.ascontiguousarray(words, np.uint32)
  if like.dtype.itemsize == 8:
    return words.view(like.dtype).reshape(words.shape[:-1])
  if like.dtype.itemsize == 4:
    return words.view(like.dtype)
  return words.view(np.float32 if np.issubdtype(like.dtype, np.floating) else np.int32)


def _wide(dtype) -> np.dtype:
  if np.issubdtype(dtype, np.bool_) or np.issubdtype(dtype, np.integer):
    return np.dtype(np.int64)
  return np.dtype(np.float64)


def reduce_stats_across_hosts(tree):
  """Sum a pytree of per-host totals over all processes; every process gets the same result.

  Integers come back as int64 and floats as float64. Each host's arrays travel bit-exactly
  (as uint32 words through `multihost_utils.process_allgather`, so int64 / float64 survive
  without x64) and are summed on the host in process order: integer totals are exact and the
  result does not depend on timing. A collective: every process must call it with the same
  tree structure and shapes. One process: the tree, widened, with no communication.
  """
  leaves, treedef = jax.tree_util.tree_flatten(tree)
  leaves = [np.asarray(x) for x in leaves]
  if jax.process_count() == 1:
    return jax.tree_util.tree_unflatten(treedef, [x.astype(_wide(x.dtype)) for x in leaves])
  from jax.experimental import multihost_utils
  gathered = multihost_utils.process_allgather([_to_words(x) for x in leaves], tiled=False)
  out = []
  for x, words in zip(leaves, gathered):
    per_host = _from_words(np.asarray(words), x).astype(_wide(x.dtype))
    total = np.zeros(x.shape, _wide(x.dtype))
    for part in per_host:  # process order: deterministic float sums
      total += part
    out.append(total)
  return jax.tree_util.tree_unflatten(treedef, out)


def is_writer() -> bool:
  """True on process 0 only: the one that writes reports, plots and host-side files."""
  return jax.process_index() == 0


def sync(name: str):
  """Barrier: every process waits here until all arrive (no-op for one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)
