"""Small named transforms from HF tensor layouts to ours (numpy in, numpy out).

A transform takes the tensor(s) of one rule for one layer, in the order the rule names
them, and returns one array. Layout only: no dtype changes (the engine casts after).
`SLICEABLE` lists the transforms whose output slice can be read as an input slice,
so sharded loading reads only what each device holds.
"""
import functools

import numpy as np


def identity(x):
  """x -> x."""
  return x


def transpose(x):
  """torch Linear weight [out, in] -> flax kernel [in, out] (all axes reversed for nd)."""
  return np.transpose(x)


def conv_to_hwio(x):
  """torch conv weight [O, I, H, W] -> flax kernel [H, W, I, O]."""
  return np.transpose(x, (2, 3, 1, 0))


def concat(*xs, axis: int = 0):
  """Fuse tensors along `axis`, e.g. q [Hq*Dh, D], k, v [Hkv*Dh, D] -> [(Hq+2Hkv)*Dh, D]."""
  return np.concatenate(xs, axis=axis)


def concat_transpose(*xs):
  """Fused torch Linears [out_i, in] -> one flax kernel [in, sum(out_i)] (e.g. fused q/k/v)."""
  return np.transpose(np.concatenate(xs, axis=0))


def split_heads(x, num_heads: int, axis: int = -1):
  """Split `axis` of size H*Dh into (H, Dh): e.g. kernel [D, H*Dh] -> [D, H, Dh]."""
  axis = axis % x.ndim
  if x.shape[axis] % num_heads:
    raise ValueError(f"split_heads: axis {axis} of shape {x.shape} is not divisible by {num_heads} heads")
  return x.reshape(x.shape[:axis] + (num_heads, x.shape[axis] // num_heads) + x.shape[axis + 1:])


def merge_heads(x, axis: int = -2):
  """Merge axes (axis, axis+1) = (H, Dh) into H*Dh: e.g. [H, Dh, D] -> [H*Dh, D]."""
  axis = axis % x.ndim
  return x.reshape(x.shape[:axis] + (x.shape[axis] * x.shape[axis + 1],) + x.shape[axis + 2:])


def heads(fn, **kwargs):
  """A named transform `fn(x, **kwargs)`, e.g. `heads(split_heads, num_heads=8)` in a Rule."""
  out = functools.partial(fn, **kwargs)
  out.__name__ = f"{fn.__name__}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
  return out


def _reverse(t):
  return tuple(reversed(t))


def _same(t):
  return tuple(t)


# transform -> (input shape -> output shape, output index -> input index).
SLICEABLE = {None: (_same, _same), identity: (_same, _same), transpose: (_reverse, _reverse)}


def name_of(fn) -> str:
  """A transform's name for error messages."""
  return "identity" if fn is None else getattr(fn, "__name__", repr(fn))
