"""Converted params <-> an orbax checkpoint directory (convert once, restore fast and sharded).

Layout of `out_dir`:
  params/         orbax PyTree checkpoint of the params nested dict
  mmneuron.json   {"format", "metadata": <caller's dict, e.g. HF config + family + dtype>,
                   "params": [[path, shape, dtype], ...]}
The param index in mmneuron.json lets `restore_params` build abstract targets
(shape, dtype, sharding) without asking orbax for its metadata, so restoring works the
same on every orbax version >= 0.6 and onto any device layout.
"""
import json
import os
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

PARAMS_DIR = "params"
META_FILE = "mmneuron.json"
FORMAT = "mmneuron_jax.params/1"


def _flatten(tree, prefix=()) -> list[tuple[tuple[str, ...], object]]:
  """Nested dict -> [(path, leaf)] in sorted key order."""
  if isinstance(tree, Mapping):
    out = []
    for key in sorted(tree):
      if not isinstance(key, str):
        raise TypeError(f"params keys must be strings, got {key!r} under {'/'.join(prefix) or '<root>'}")
      out += _flatten(tree[key], prefix + (key,))
    return out
  if not hasattr(tree, "shape") or not hasattr(tree, "dtype"):
    raise TypeError(f"params leaf {'/'.join(prefix)} is a {type(tree).__name__}, not an array")
  return [(prefix, tree)]


def _unflatten(items) -> dict:
  tree: dict = {}
  for path, value in items:
    node = tree
    for key in path[:-1]:
      node = node.setdefault(key, {})
    node[path[-1]] = value
  return tree


def _lookup(tree, path):
  node = tree
  for key in path:
    if not isinstance(node, Mapping) or key not in node:
      raise KeyError(f"shardings has no entry for param {'/'.join(path)}")
    node = node[key]
  return node


def save_params(out_dir: str, params: dict, metadata: dict, overwrite: bool = False) -> str:
  """Write `params` (nested dict of arrays) and JSON-able `metadata` to `out_dir`; returns it."""
  out_dir = os.path.abspath(os.fspath(out_dir))
  try:
    meta_text = json.dumps(metadata)
  except TypeError as e:
    raise TypeError(f"save_params: metadata is not JSON-serialisable ({e})") from None
  items = _flatten(params)
  index = [["/".join(path), list(x.shape), jnp.dtype(x.dtype).name] for path, x in items]
  ckpt = os.path.join(out_dir, PARAMS_DIR)
  if os.path.exists(ckpt) and not overwrite:
    raise FileExistsError(f"{ckpt} already exists; pass overwrite=True to replace it")
  os.makedirs(out_dir, exist_ok=True)
  tree = _unflatten((p, x if isinstance(x, jax.Array) else jnp.asarray(x)) for p, x in items)
  ocp.PyTreeCheckpointer().save(ckpt, args=ocp.args.PyTreeSave(tree), force=overwrite)
  if jax.process_index() == 0:
    meta_path = os.path.join(out_dir, META_FILE)
    with open(meta_path + ".tmp", "w") as f:
      f.write(json.dumps({"format": FORMAT, "metadata": json.loads(meta_text), "params": index}, indent=1))
    os.replace(meta_path + ".tmp", meta_path)
  return out_dir


def read_metadata(out_dir: str) -> dict:
  """The full mmneuron.json of a saved checkpoint (format, metadata, params index)."""
  out_dir = os.path.abspath(os.fspath(out_dir))
  if not os.path.isdir(out_dir):
    raise FileNotFoundError(f"checkpoint directory {out_dir!r} does not exist")
  meta_path = os.path.join(out_dir, META_FILE)
  if not os.path.isfile(meta_path):
    raise FileNotFoundError(f"{meta_path}: missing; {out_dir!r} is not a saved mmneuron_jax checkpoint "
                            "(or its save did not finish)")
  with open(meta_path) as f:
    meta = json.load(f)
  if meta.get("format") != FORMAT:
    raise ValueError(f"{meta_path}: format {meta.get('format')!r}, expected {FORMAT!r}")
  return meta


def saved_shapes(out_dir: str, shardings=None) -> dict:
  """Nested dict of jax.ShapeDtypeStruct (with sharding) for a saved checkpoint."""
  meta = read_metadata(out_dir)
  default = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  items = []
  for name, shape, dtype in meta["params"]:
    path = tuple(name.split("/"))
    sharding = default if shardings is None else _lookup(shardings, path)
    items.append((path, jax.ShapeDtypeStruct(tuple(shape), jnp.dtype(dtype), sharding=sharding)))
  return _unflatten(items)


def restore_params(out_dir: str, shardings=None) -> tuple[dict, dict]:
  """-> (params nested dict of jax.Arrays, metadata as saved).

  shardings: optional pytree of `jax.sharding.Sharding` matching params; each device then
  reads only its slice. Default: everything on the first local device.
  """
  out_dir = os.path.abspath(os.fspath(out_dir))
  meta = read_metadata(out_dir)
  target = saved_shapes(out_dir, shardings)
  restore_args = jax.tree.map(
      lambda s: ocp.type_handlers.ArrayRestoreArgs(sharding=s.sharding, global_shape=s.shape, dtype=s.dtype),
      target)
  params = ocp.PyTreeCheckpointer().restore(
      os.path.join(out_dir, PARAMS_DIR), args=ocp.args.PyTreeRestore(item=target, restore_args=restore_args))
  for path, x in _flatten(params):
    want = _lookup(target, path)
    if tuple(x.shape) != want.shape or np.dtype(x.dtype) != np.dtype(want.dtype):
      raise ValueError(f"{out_dir}: param {'/'.join(path)} restored as {x.shape} {x.dtype}, "
                       f"{META_FILE} says {want.shape} {want.dtype}")
  return params, meta["metadata"]
