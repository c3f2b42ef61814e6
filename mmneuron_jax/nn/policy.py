"""Dtype policy: params dtype, compute dtype and matmul precision, explicit everywhere."""
import dataclasses

import jax
import jax.numpy as jnp

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


@dataclasses.dataclass(frozen=True)
class Policy:
  """`param_dtype` stores weights, `compute_dtype` runs matmuls; statistics are always fp32.

  A float32 compute dtype means full float32 on every backend (`precision=HIGHEST`,
  no TF32 or bf16 passes), which is what HF parity needs.
  """
  param_dtype: str = "float32"
  compute_dtype: str = "float32"

  def __post_init__(self):
    for field in ("param_dtype", "compute_dtype"):
      value = getattr(self, field)
      if value not in _DTYPES:
        raise ValueError(f"Policy.{field}={value!r}; expected one of {sorted(_DTYPES)}")

  @property
  def param(self):
    return _DTYPES[self.param_dtype]

  @property
  def compute(self):
    return _DTYPES[self.compute_dtype]

  @property
  def precision(self):
    if self.compute_dtype == "float32":
      return jax.lax.Precision.HIGHEST
    return jax.lax.Precision.DEFAULT


def resolve_dtype(name: str):
  """'float32' | 'bfloat16' | 'float16' -> jnp dtype, with a clear error otherwise."""
  if name not in _DTYPES:
    raise ValueError(f"dtype={name!r} is not supported; expected one of {sorted(_DTYPES)}")
  return _DTYPES[name]
