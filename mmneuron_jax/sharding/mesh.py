"""Device meshes with axes ('data', 'fsdp', 'tensor'): from sizes, a 'data,fsdp,tensor' spec or
a run config."""
from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh

AXES = ("data", "fsdp", "tensor")


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


def useful_axes(mesh: Mesh, axes):
  """Drop size-1 axes: None, a name or a tuple of names (None if nothing is left)."""
  if axes is None:
    return None
  names = (axes,) if isinstance(axes, str) else tuple(axes)
  names = tuple(a for a in names if mesh.shape[a] > 1)
  return None if not names else names[0] if len(names) == 1 else names
