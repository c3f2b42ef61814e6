"""Params -> HF tensors: the conversion rules run backwards.

Every transform a `Rule` applies is a layout change (transpose, concat, reshape), so it moves
elements without changing them. Running the rule's transform on index arrays (`arange` shaped
like each HF tensor, offset per part) gives, for every element of our param, the flat index of
the HF element it came from; scattering the param through that index writes the HF tensors back.
A transform that does anything else (an element used twice or never) is refused by name.
"""
import jax.numpy as jnp
import numpy as np

from mmneuron_jax.convert.mapping import ConversionError, Plan, _fmt, _transform, plan_rules


def _lookup(params, path):
  node = params
  for key in path:
    node = node[key]
  return np.asarray(node)


def _invert(plan: Plan, layer: int, value: np.ndarray, shapes: list[tuple]) -> list[np.ndarray]:
  sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
  offsets = np.cumsum([0] + sizes)
  index = [np.arange(o, o + n, dtype=np.int64).reshape(s) for o, n, s in zip(offsets, sizes, shapes)]
  mapped = np.asarray(_transform(plan, layer, index))
  if mapped.shape != value.shape:
    raise ConversionError(f"{_fmt(plan.rule.path)}: param has shape {value.shape}, the rule maps "
                          f"{list(plan.names[layer])} to {mapped.shape}")
  hits = np.bincount(mapped.reshape(-1), minlength=offsets[-1])
  if mapped.min() < 0 or len(hits) != offsets[-1] or not np.all(hits == 1):
    raise ConversionError(f"{_fmt(plan.rule.path)}: transform is not a layout change of "
                          f"{list(plan.names[layer])}; cannot write it back")
  flat = np.empty(offsets[-1], value.dtype)
  flat[mapped.reshape(-1)] = value.reshape(-1)
  return [flat[o:o + n].reshape(s) for o, n, s in zip(offsets, sizes, shapes)]


def hf_state(params, rules, reader, ignore=()) -> dict:
  """{HF name: np.ndarray} for `params` under `rules`, named and shaped as the checkpoint `reader`
  (the one the params were loaded from, or any with the same names) holds them. Tensors the rules
  ignore are copied from `reader` unchanged; dtypes follow `reader`'s floating dtypes."""
  state = {}
  for plan in plan_rules(reader, rules, ignore):
    value = _lookup(params, plan.rule.path)
    for layer, names in enumerate(plan.names):
      part = value[layer] if plan.rule.stack is not None else value
      tensors = _invert(plan, layer, part, [reader.shape(n) for n in names])
      for name, tensor in zip(names, tensors):
        dtype = reader.dtype(name)
        state[name] = tensor.astype(dtype if jnp.issubdtype(dtype, jnp.floating) else tensor.dtype)
  for name in reader.keys() - set(state):
    state[name] = np.asarray(reader.get(name))
  return state
