"""Dtype policy: params dtype, compute dtype and matmul precision, explicit everywhere."""
import dataclasses

import jax

from mmneuron_jax.dtypes import DTYPES

_FP32_MATMUL = {"highest": jax.lax.Precision.HIGHEST,
                "bf16_3x": jax.lax.DotAlgorithmPreset.BF16_BF16_F32_X3,
                "bf16_6x": jax.lax.DotAlgorithmPreset.BF16_BF16_F32_X6,
                "bf16_9x": jax.lax.DotAlgorithmPreset.BF16_BF16_F32_X9}


@dataclasses.dataclass(frozen=True)
class Policy:
  """`param_dtype` stores weights, `compute_dtype` runs matmuls; statistics are always fp32.

  A float32 compute dtype means full float32 on every backend (`precision=HIGHEST`,
  no TF32 or bf16 passes), which is what HF parity needs. `fp32_matmul` may trade that for
  tensor-core emulation of fp32 on GPUs ('bf16_6x' / 'bf16_9x': products split into bf16
  pieces, fp32 accumulation; about fp32 accuracy at 2-3x the speed of true fp32 on an H100;
  'bf16_3x': three passes, hi*hi + hi*lo + lo*hi, ~2^-16 relative error per product instead of
  fp32's 2^-24: faster, not bit-faithful). CPUs ignore the algorithm and compute in fp32.

  `attention`: 'xla' materialises the probabilities (always available; needed for parity
  on CPU); 'cudnn' calls `jax.nn.dot_product_attention(implementation='cudnn')` (flash
  attention on NVIDIA GPUs, bf16/fp16, head dim <= 256 and a multiple of 8; other attention
  falls back to 'xla'), with `is_causal` + key lengths for right-padded prefill; 'fused' calls
  it with XLA's own choice of kernel (any dtype and backend: the same masks as 'cudnn',
  testable on a CPU; float32 at precision highest).
  """
  param_dtype: str = "float32"
  compute_dtype: str = "float32"
  fp32_matmul: str = "highest"
  attention: str = "xla"

  def __post_init__(self):
    for field in ("param_dtype", "compute_dtype"):
      value = getattr(self, field)
      if value not in DTYPES:
        raise ValueError(f"Policy.{field}={value!r}; expected one of {sorted(DTYPES)}")
    if self.fp32_matmul not in _FP32_MATMUL:
      raise ValueError(f"Policy.fp32_matmul={self.fp32_matmul!r}; expected one of {sorted(_FP32_MATMUL)}")
    if self.attention not in ("xla", "cudnn", "fused"):
      raise ValueError(f"Policy.attention={self.attention!r}; expected 'xla', 'cudnn' or 'fused'")
    if self.attention == "cudnn" and self.compute_dtype == "float32":
      raise ValueError("Policy.attention='cudnn' needs compute_dtype bfloat16 or float16 (cuDNN flash "
                       "attention has no float32 kernel)")

  @property
  def param(self):
    return DTYPES[self.param_dtype]

  @property
  def compute(self):
    return DTYPES[self.compute_dtype]

  @property
  def precision(self):
    if self.compute_dtype == "float32":
      return _FP32_MATMUL[self.fp32_matmul]
    return jax.lax.Precision.DEFAULT


def resolve_dtype(name: str):
  """'float32' | 'bfloat16' | 'float16' -> numpy dtype (`dtypes.DTYPES`), with a clear error otherwise."""
  if name not in DTYPES:
    raise ValueError(f"dtype={name!r} is not supported; expected one of {sorted(DTYPES)}")
  return DTYPES[name]
