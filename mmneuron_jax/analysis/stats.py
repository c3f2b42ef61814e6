"""Per-module, per-group neuron statistics, reduced inside the layer scans.

`step(params, batch, groups)` returns, for every probe module m,
  count int32[L, G, F] (tokens with activation > 0), sum / sumsq float32[L, G, F],
  tokens int32[G] (tokens counted; identical for every layer),
  nonfinite int32[L] (NaN / Inf activations of counted tokens; checked per batch by
  `analysis.finite.check_partial`, never stored: `without_checks` drops it).
Padded positions and padded tile slots carry group -1 and never count.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from mmneuron_jax.models.base import forward, mask_arrays
from mmneuron_jax.nn.probes import GroupStats


def group_stats(module, num_groups, modules, params, batch, groups, masks=None):
  """Pure: the forward with a `GroupStats` probe on each of `modules` -> {module: {'count', 'sum',
  'sumsq', 'tokens', 'nonfinite'}} (count int32[L, G, F], sum / sumsq float32[L, G, F], tokens int32[G],
  nonfinite int32[L])."""
  probe = {m: GroupStats(groups[m], num_groups) for m in modules if m in groups}
  out = forward(module, params, batch, masks=masks, probe=probe)
  result = {}
  for m, r in out.probe.items():
    result[m] = {"count": r["count"], "sum": r["sum"], "sumsq": r["sumsq"], "tokens": r["tokens"][0],
                 "nonfinite": r["nonfinite"]}
  return result


def make_step(model, num_groups: int, modules=None):
  """-> `step(params, model.device_batch(batch), groups, masks=None) -> {module: stats}` (see
  `group_stats`): one jit (`Model.jit_step`), sharded when the model is on a mesh (groups
  {module: int32[...]} split on their batch axis, results replicated; host arrays on a mesh
  spanning processes)."""
  modules = tuple(modules or model.probe_modules)
  step = model.jit_step(("stats", int(num_groups), modules),
                        functools.partial(group_stats, model.module, int(num_groups), modules),
                        ("params", "batch", "batch", "replicated"))

  def fn(params, batch, groups, masks=None):
    model.check_masks(masks)
    groups = {k: v if isinstance(v, jax.Array) else np.asarray(v, np.int32) for k, v in groups.items()}
    return step(params, batch, groups, mask_arrays(masks))

  return fn


def to_device_groups(groups: dict) -> dict:
  return {k: jnp.asarray(v, jnp.int32) for k, v in groups.items()}


def flatten(stats: dict) -> dict:
  """{module: {field: array}} -> {'field/module': np.ndarray} (the StatsStore layout)."""
  return {f"{field}/{m}": np.asarray(v) for m, fields in stats.items() for field, v in fields.items()}


CHECK_FIELDS = ("nonfinite",)  # per-batch checks, not statistics: not in the store


def without_checks(flat: dict) -> dict:
  """A flattened partial without the per-batch check fields (the StatsStore's names only)."""
  return {k: v for k, v in flat.items() if k.split("/", 1)[0] not in CHECK_FIELDS}


def unflatten(flat: dict) -> dict:
  out = {}
  for key, v in flat.items():
    field, m = key.split("/", 1)
    out.setdefault(m, {})[field] = v
  return out


def store_spec(probe_modules: dict, num_groups: int) -> dict:
  """StatsStore spec: name -> (shape, dtype), host totals in int64 / float64."""
  spec = {}
  for m, (layers, width) in probe_modules.items():
    spec[f"count/{m}"] = ((layers, num_groups, width), "int64")
    spec[f"sum/{m}"] = ((layers, num_groups, width), "float64")
    spec[f"sumsq/{m}"] = ((layers, num_groups, width), "float64")
    spec[f"tokens/{m}"] = ((num_groups,), "int64")
  return spec


def counts_for_dape(flat_totals: dict, module: str):
  """-> (counts float[G, L, F], n_tokens float[G]) for `analysis.dape.select`."""
  counts = np.transpose(np.asarray(flat_totals[f"count/{module}"]), (1, 0, 2))
  return counts, np.asarray(flat_totals[f"tokens/{module}"])
