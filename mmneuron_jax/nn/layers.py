"""Basic layers with an explicit dtype policy: Dense, RMSNorm, LayerNorm, activations."""
import flax.linen as nn
import jax
import jax.numpy as jnp

from mmneuron_jax.nn.policy import Policy


class Dense(nn.Module):
  """`y = x @ kernel + bias`, kernel float[in, out] (a torch Linear weight transposed)."""
  features: int
  use_bias: bool = True
  policy: Policy = Policy()

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.normal(0.02), (x.shape[-1], self.features),
                        self.policy.param)
    y = jnp.einsum("...i,io->...o", x.astype(self.policy.compute), kernel.astype(self.policy.compute),
                   precision=self.policy.precision)
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros, (self.features,), self.policy.param)
      y = y + bias.astype(y.dtype)
    return y


def rms_norm(x, scale, eps):
  """HF Llama RMSNorm: normalise in fp32, cast back, then multiply by the weight."""
  dtype = x.dtype
  x32 = x.astype(jnp.float32)
  x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
  return scale.astype(dtype) * x32.astype(dtype)


class RMSNorm(nn.Module):
  eps: float = 1e-6
  policy: Policy = Policy()

  @nn.compact
  def __call__(self, x):
    scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), self.policy.param)
    return rms_norm(x, scale, self.eps)


class LayerNorm(nn.Module):
  """torch.nn.LayerNorm semantics (biased variance, eps inside the sqrt), computed in fp32."""
  eps: float = 1e-5
  policy: Policy = Policy()

  @nn.compact
  def __call__(self, x):
    d = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (d,), self.policy.param)
    bias = self.param("bias", nn.initializers.zeros, (d,), self.policy.param)
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
    return (y * scale.astype(jnp.float32) + bias.astype(jnp.float32)).astype(x.dtype)


def quick_gelu(x):
  return x * jax.nn.sigmoid(1.702 * x)


ACTIVATIONS = {
    "silu": jax.nn.silu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "quick_gelu": quick_gelu,
    "relu": jax.nn.relu,
}


def activation(name: str):
  if name not in ACTIVATIONS:
    raise ValueError(f"activation {name!r} is not supported; expected one of {sorted(ACTIVATIONS)}")
  return ACTIVATIONS[name]
