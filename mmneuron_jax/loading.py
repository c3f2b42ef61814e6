"""Models onto a mesh: the shardings of any family, and checkpoint loading in
which each device reads only its slices. Sits above `api` and `sharding` (it builds models)."""
import os

from jax.sharding import Mesh

from mmneuron_jax import api
from mmneuron_jax.io import checkpoint
from mmneuron_jax.io.hub import resolve_checkpoint
from mmneuron_jax.models import shapes
from mmneuron_jax.sharding import DEFAULT_RULES, mesh_from_config, param_shardings


def shardings_for_config(config: dict, mesh: Mesh, dtype: str = "float32", rules=DEFAULT_RULES):
  """Param shardings for a HF config dict of any family (shapes from `models.shapes.abstract_params`)."""
  return param_shardings(shapes.abstract_params(config, dtype), mesh, rules)


def load_on_mesh(path: str, mesh: Mesh | None, rules=DEFAULT_RULES, **load_kwargs):
  """A HF checkpoint dir (`load_hf`) or a `convert_checkpoint` output (`load`: it holds mmneuron.json) ->
  `Model` on `mesh`: every param is built by `jax.make_array_from_callback` from its slices
  (safetensors slices / orbax restore against sharded abstract targets), so no host ever holds
  a whole sharded tensor. mesh None -> no shardings (the plain jit path).
  load_kwargs: dtype, compute_dtype, ... `path` may be a hub id in the local cache (io/hub.py)."""
  path = resolve_checkpoint(path)
  converted = os.path.exists(os.path.join(path, checkpoint.META_FILE))
  if converted:
    load_kwargs.pop("dtype", None)  # a converted checkpoint keeps the dtype it was saved with
  load = api.load if converted else api.load_hf
  if mesh is None:
    return load(path, **load_kwargs)
  shapes_ = (checkpoint.saved_shapes(path) if converted else
             shapes.abstract_params(api.read_config(path), load_kwargs.get("dtype", "float32")))
  return load(path, shardings=param_shardings(shapes_, mesh, rules), **load_kwargs).on_mesh(mesh, rules)


def load_for_config(path: str, config):
  """The tasks' model loading: `load_on_mesh` on the run config's `mesh`, with its `model.dtype`,
  `model.compute_dtype`, `model.attention` and `model.fp32_matmul`."""
  m = config.model
  return load_on_mesh(path, mesh_from_config(config), dtype=m.dtype, compute_dtype=m.compute_dtype or None,
                      attention=m.get("attention", "xla"), fp32_matmul=m.get("fp32_matmul", "highest"))
