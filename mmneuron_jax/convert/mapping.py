"""Conversion is data: a list of `Rule`s maps our param paths to HF tensor names.

    Rule(("layers", "mlp", "up", "kernel"), "model.layers.{i}.mlp.up_proj.weight", transpose, L)

reads the L per-layer tensors, transposes each, and stacks them to `[L, D, F]`.
`hf` forms:
  - `"name"`: one tensor;
  - `("name_a", "name_b")`: alternatives (two checkpoint layouts); the first whose
    first tensor (layer 0) exists is used;
  - `["q", "k", "v"]`: several tensors, passed in order to the transform (default:
    `transforms.concat` along axis 0); a part may itself be a tuple of alternatives,
    and an alternative may be a list (`(["a.q", "a.k"], ["b.q", "b.k"])`).
`apply_rules` first plans every rule against the checkpoint headers (no data read), so
missing, unused or doubly used tensors are all reported in one `ConversionError`
before any tensor is loaded; then each param is read, transformed, cast and placed
(optionally sharded, each device reading only its slice).
"""
import dataclasses
import re
from typing import Any, Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np

from mmneuron_jax.convert import transforms as T
from mmneuron_jax.convert.checks import UnsupportedConfigError
from mmneuron_jax.dtypes import DTYPES
from mmneuron_jax.errors import UserError

__all__ = ["Rule", "ConversionError", "UnsupportedConfigError", "apply_rules", "plan_rules", "param_dtype"]



class ConversionError(UserError):
  """The checkpoint does not match the declarative map (missing / unused / malformed tensors)."""


@dataclasses.dataclass(frozen=True)
class Rule:
  """Our param `path` <- HF tensor(s) `hf`, through `transform`, stacked over `stack` layers.

  `hf` names may contain `{i}`, expanded for i in range(stack) and stacked on a new
  leading axis `[stack, ...]`. The transform sees one layer's tensors, in `hf` order.
  """
  path: tuple[str, ...]
  hf: Any
  transform: Callable | None = None
  stack: int | None = None

  def __post_init__(self):
    if not (isinstance(self.path, tuple) and self.path and all(isinstance(p, str) and p for p in self.path)):
      raise TypeError(f"Rule.path must be a non-empty tuple of strings, got {self.path!r}")
    if self.stack is not None and (isinstance(self.stack, bool) or not isinstance(self.stack, int)
                                   or self.stack < 1):
      raise TypeError(f"Rule {_fmt(self.path)}: stack must be a positive int or None, got {self.stack!r}")
    names = [n for cand in self.candidates() for part in cand for n in part]
    templated = ["{i}" in n for n in names]
    if self.stack is not None and not all(templated):
      raise TypeError(f"Rule {_fmt(self.path)}: stack={self.stack} but a name has no '{{i}}': {self.hf!r}")
    if self.stack is None and any(templated):
      raise TypeError(f"Rule {_fmt(self.path)}: a name has '{{i}}' but stack is None: {self.hf!r}")

  def candidates(self) -> list[list[tuple[str, ...]]]:
    """`hf` normalised: alternatives, each a list of parts, each part a tuple of name alternatives."""
    hf = self.hf
    if isinstance(hf, str):
      out = [[(hf,)]]
    elif isinstance(hf, tuple):
      out = [[(a,)] if isinstance(a, str) else [(n,) for n in a] for a in hf]
    elif isinstance(hf, list):
      out = [[(p,) if isinstance(p, str) else tuple(p) for p in hf]]
    else:
      raise TypeError(f"Rule {_fmt(self.path)}: hf must be a str, tuple or list, got {type(hf).__name__}")
    for cand in out:
      if not cand or any(not part or not all(isinstance(n, str) for n in part) for part in cand):
        raise TypeError(f"Rule {_fmt(self.path)}: malformed hf {hf!r}")
    return out


@dataclasses.dataclass(frozen=True)
class Plan:
  """A rule resolved against one checkpoint: `names[layer][part]` (one layer when unstacked)."""
  rule: Rule
  names: tuple[tuple[str, ...], ...]


def _fmt(path) -> str:
  return "/".join(path)


def param_dtype(dtype: str) -> np.dtype:
  """'float32' | 'bfloat16' | 'float16' -> numpy dtype; anything else is a clear error."""
  if not isinstance(dtype, str) or dtype not in DTYPES:
    raise ValueError(f"dtype={dtype!r} is not supported for converted params; expected one of {sorted(DTYPES)}")
  return DTYPES[dtype]


# -- planning (headers only) ---------------------------------------------------------------

def _expand(name: str, stack: int | None) -> list[str]:
  return [name] if stack is None else [name.replace("{i}", str(i)) for i in range(stack)]


def _first(name: str) -> str:
  return name.replace("{i}", "0")


def _plan_one(keys: set, rule: Rule) -> tuple[Plan | None, list[str], set[str]]:
  """-> (plan or None, missing descriptions, names claimed). Picks the first alternative
  whose first tensor exists; a partly missing rule still claims the names it found."""
  cands = rule.candidates()

  def pick(part):
    return next((n for n in part if _first(n) in keys), None)

  chosen = next((c for c in cands if pick(c[0]) is not None), cands[0])
  missing, picked, claimed = [], [], set()
  for k, part in enumerate(chosen):
    name = pick(part)
    if name is None:
      tried = [n for c in cands for n in c[0]] if k == 0 else list(part)  # k == 0: no alternative matched
      others = [n for n in tried if n != part[0]]
      span = f" for i in 0..{rule.stack - 1}" if rule.stack else ""
      also = f" (also tried: {', '.join(others)})" if others else ""
      missing.append(f"{part[0]}{span}{also}  [for {_fmt(rule.path)}]")
      continue
    absent = [n for n in _expand(name, rule.stack) if n not in keys]
    missing += [f"{n}  [for {_fmt(rule.path)}]" for n in absent]
    claimed |= set(_expand(name, rule.stack)) - set(absent)
    picked.append(name)
  if missing:
    return None, missing, claimed
  layers = tuple(tuple(_expand(n, rule.stack)[i] for n in picked) for i in range(rule.stack or 1))
  return Plan(rule, layers), [], claimed


def _check_paths(rules: list[Rule]):
  paths = [r.path for r in rules]
  seen, clashes = set(), []
  for p in paths:
    if p in seen:
      clashes.append(f"{_fmt(p)} is produced by two rules")
    seen.add(p)
  for p in seen:
    for k in range(1, len(p)):
      if p[:k] in seen:
        clashes.append(f"{_fmt(p[:k])} is both a param and a prefix of {_fmt(p)}")
  if clashes:
    raise ConversionError("conflicting rule paths:\n  " + "\n  ".join(sorted(clashes)))


def plan_rules(reader, rules: list[Rule], ignore: Iterable[str] = ()) -> list[Plan]:
  """Resolve every rule against the checkpoint's names; no tensor data is read.

  Raises one `ConversionError` listing all missing tensors, all tensors used by two rules
  and all unused tensors (those matching an `ignore` regex, `re.search`, may stay unused).
  """
  rules = list(rules)
  _check_paths(rules)
  keys = reader.keys()
  plans, missing, users = [], [], {}
  for rule in rules:
    plan, miss, claimed = _plan_one(keys, rule)
    missing += miss
    if plan is not None:
      plans.append(plan)
    for name in claimed:
      users.setdefault(name, []).append(_fmt(rule.path))
  twice = sorted(f"{n} (by {', '.join(u)})" for n, u in users.items() if len(u) > 1)
  patterns = [re.compile(p) for p in ignore]
  unused = sorted(n for n in keys - set(users) if not any(p.search(n) for p in patterns))
  if missing or twice or unused:
    where = getattr(reader, "path", "<checkpoint>")
    parts = []
    if missing:
      parts.append(f"{len(missing)} tensor(s) the model needs are missing from the checkpoint:\n  "
                   + "\n  ".join(sorted(missing)))
    if twice:
      parts.append(f"{len(twice)} tensor(s) are used by more than one rule:\n  " + "\n  ".join(twice))
    if unused:
      parts.append(f"{len(unused)} checkpoint tensor(s) are not used by any rule:\n  " + "\n  ".join(unused))
    raise ConversionError(f"checkpoint {where}: " + "\n".join(parts))
  return plans


# -- loading -------------------------------------------------------------------------------

def _cast(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
  """Floating arrays to the params dtype; integer / bool buffers keep theirs."""
  x = np.asarray(x)
  return x.astype(dtype, copy=False) if jnp.issubdtype(x.dtype, jnp.floating) else x


def _transform(plan: Plan, layer: int, arrays: list[np.ndarray]) -> np.ndarray:
  fn = plan.rule.transform
  try:
    if fn is None:
      return arrays[0] if len(arrays) == 1 else T.concat(*arrays)
    return np.asarray(fn(*arrays))
  except Exception as e:  # a shape the transform cannot take: name the rule and tensors
    raise ConversionError(f"{_fmt(plan.rule.path)}: transform {T.name_of(fn)} failed on "
                          f"{list(plan.names[layer])} with shapes {[a.shape for a in arrays]}: {e}") from e


ALIGN = 64  # bytes: XLA's CPU client takes a buffer this aligned without copying it (`jax.device_put`)
BLOCK_BYTES = 64 << 20  # unstacked tensors are read this many bytes at a time


def empty_aligned(shape: tuple, dtype) -> np.ndarray:
  """`np.empty(shape, dtype)` whose data starts on an `ALIGN`-byte boundary, so that on CPU
  `jax.device_put` adopts it instead of copying (numpy alone aligns to 16 bytes)."""
  dtype = np.dtype(dtype)
  n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  raw = np.empty(n + ALIGN, np.uint8)
  start = -raw.ctypes.data % ALIGN
  return raw[start:start + n].view(dtype).reshape(shape)


def _target(src: np.dtype, dtype: np.dtype) -> np.dtype:
  """The params dtype for floating tensors; integer / bool buffers keep theirs."""
  return dtype if jnp.issubdtype(src, jnp.floating) else src


def _stack_into(plan: Plan, out, layer: int, x: np.ndarray, dtype: np.dtype):
  """Layer `layer` of `out` (allocated at layer 0) <- x, cast while copied (no cast copy of x)."""
  if out is None:
    out = empty_aligned((len(plan.names),) + x.shape, _target(x.dtype, dtype))
  elif x.shape != out.shape[1:]:
    raise ConversionError(f"{_fmt(plan.rule.path)}: layer {layer} ({list(plan.names[layer])}) gives shape "
                          f"{x.shape}, layer 0 gave {out.shape[1:]}")
  out[layer] = x
  return out


def _load_blocks(reader, plan: Plan, dtype: np.dtype) -> np.ndarray:
  """An unstacked, slice-able (identity / transpose) param, read `BLOCK_BYTES` of rows at a time
  and cast into its output buffer: the host holds the param plus one block."""
  out_shape, in_index = T.SLICEABLE[plan.rule.transform]
  fn = plan.rule.transform or T.identity
  name = plan.names[0][0]
  shape, src = reader.shape(name), reader.dtype(name)
  out = empty_aligned(tuple(out_shape(shape)), _target(src, dtype))
  if not shape:
    out[...] = reader.get(name)
    return out
  rows = max(1, BLOCK_BYTES // max(1, int(np.prod(shape[1:], dtype=np.int64)) * src.itemsize))
  full = (slice(None),) * (len(shape) - 1)
  for start in range(0, shape[0], rows):
    index = (slice(start, min(start + rows, shape[0])),) + full
    out[tuple(in_index(index))] = fn(reader.get_slice(name, index))  # identity / transpose: own inverses
  return out


def load_full(reader, plan: Plan, dtype: np.dtype) -> np.ndarray:
  """One param on the host, in an aligned buffer of its own: per-layer read -> transform -> cast
  into the preallocated `[L, ...]` (or, unstacked, block by block)."""
  if plan.rule.stack is None and len(plan.names[0]) == 1 and plan.rule.transform in T.SLICEABLE:
    return _load_blocks(reader, plan, dtype)
  out = None
  for layer, names in enumerate(plan.names):
    x = _transform(plan, layer, [reader.get(n) for n in names])
    if plan.rule.stack is None:
      out = empty_aligned(x.shape, _target(np.asarray(x).dtype, dtype))
      out[...] = x
      return out
    out = _stack_into(plan, out, layer, x, dtype)
    del x
  return out


def _concrete(index: tuple, shape: tuple) -> tuple:
  """A device's index (slices, maybe open) -> concrete slices, one per axis."""
  index = tuple(index) + (slice(None),) * (len(shape) - len(index))
  return tuple(slice(*s.indices(n)) for s, n in zip(index, shape))


def load_sharded(reader, plan: Plan, dtype: np.dtype, sharding) -> jax.Array:
  """One param as a sharded jax.Array; each device's slice is read on its own (get_slice)
  when the transform is slice-able (identity / transpose), else from the full tensor."""
  maps = T.SLICEABLE.get(plan.rule.transform) if len(plan.names[0]) == 1 else None
  if maps is None:
    full = load_full(reader, plan, dtype)
    return jax.make_array_from_callback(full.shape, sharding, lambda idx: full[idx])
  out_shape, in_index = maps
  first = plan.names[0][0]
  for (name,) in plan.names:
    if reader.shape(name) != reader.shape(first):
      raise ConversionError(f"{_fmt(plan.rule.path)}: {name} has shape {reader.shape(name)}, "
                            f"{first} has {reader.shape(first)}")
  inner = tuple(out_shape(reader.shape(first)))
  stacked = plan.rule.stack is not None
  shape = (len(plan.names),) + inner if stacked else inner
  fn = plan.rule.transform or T.identity
  cache = {}

  def read(idx):
    idx = _concrete(idx, shape)
    key = tuple((s.start, s.stop, s.step) for s in idx)
    if key not in cache:
      if stacked:
        layers = range(len(plan.names))[idx[0]]
        src = tuple(in_index(idx[1:]))
        parts = [_cast(fn(reader.get_slice(plan.names[i][0], src)), dtype) for i in layers]
        if parts:
          cache[key] = np.stack(parts)
        else:  # an empty layer range
          src_dtype = reader.dtype(first)
          cache[key] = np.empty(tuple(len(range(*s.indices(n))) for s, n in zip(idx, shape)),
                                dtype if jnp.issubdtype(src_dtype, jnp.floating) else src_dtype)
      else:
        cache[key] = _cast(fn(reader.get_slice(first, tuple(in_index(idx)))), dtype)
    return cache[key]

  return jax.make_array_from_callback(shape, sharding, read)


def _lookup(tree, path: tuple[str, ...]):
  node = tree
  for i, key in enumerate(path):
    try:
      node = node[key]
    except (KeyError, TypeError, IndexError):
      raise ConversionError(f"shardings has no entry for param {_fmt(path)} (stops at {_fmt(path[:i]) or '<root>'})"
                            ) from None
  return node


def _insert(tree: dict, path: tuple[str, ...], value):
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


def apply_rules(reader, rules: list[Rule], dtype: str = "float32", ignore: Iterable[str] = (),
                shardings=None) -> dict:
  """Checkpoint -> params nested dict of jax.Arrays, per the declarative `rules`.

  dtype: params dtype for floating tensors ('float32' | 'bfloat16' | 'float16').
  ignore: regexes of checkpoint tensors that may stay unused (e.g. r'rotary_emb\\.inv_freq$').
  shardings: optional pytree of `jax.sharding.Sharding` with the params' structure; each
    param is then built by `jax.make_array_from_callback`, each device reading its slice.
  Every check (missing / unused / doubly used tensors) runs before any data is read.
  """
  np_dtype = param_dtype(dtype)
  plans = plan_rules(reader, rules, ignore)
  shard_of = {p.rule.path: _lookup(shardings, p.rule.path) for p in plans} if shardings is not None else {}
  params: dict = {}
  for plan in plans:
    sharding = shard_of.get(plan.rule.path)
    if sharding is None:  # on CPU the aligned host buffer becomes the param, uncopied
      value = jax.device_put(load_full(reader, plan, np_dtype))
    else:
      value = load_sharded(reader, plan, np_dtype, sharding)
    _insert(params, plan.rule.path, value)
  return params
