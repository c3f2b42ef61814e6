"""Params onto a mesh: abstract shapes of any family, their shardings, and checkpoint loading in
which each device reads only its slices."""
import jax
from jax.sharding import Mesh

from mmneuron_jax.sharding.mesh import mesh_from_config
from mmneuron_jax.sharding.rules import DEFAULT_RULES, param_shardings


def shardings_for_config(config: dict, mesh: Mesh, dtype: str = "float32", rules=DEFAULT_RULES):
  """Param shardings for a HF config dict of any family (shapes from `models.shapes.abstract_params`)."""
  from mmneuron_jax.models import shapes
  return param_shardings(shapes.abstract_params(config, dtype), mesh, rules)


def place_params(params, mesh: Mesh, rules=DEFAULT_RULES):
  """Move existing params onto `mesh` per `rules` (a no-op for params loaded with them)."""
  return jax.device_put(params, param_shardings(params, mesh, rules))


def load_on_mesh(path: str, mesh: Mesh | None, rules=DEFAULT_RULES, **load_kwargs):
  """A HF checkpoint dir (`load_hf`) or a `convert_checkpoint` output (`load`: it holds mmneuron.json) ->
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
    from mmneuron_jax.io.checkpoint import saved_shapes
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
