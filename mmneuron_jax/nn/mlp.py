"""MLPs that return their neuron activations (the post-activation hidden units)."""
import flax.linen as nn

from mmneuron_jax.nn.layers import Dense, activation
from mmneuron_jax.nn.policy import Policy


def apply_mask(a, mask):
  """Neuron mask on a float[..., F]: float[F] multiplies (1 keeps, 0 deactivates); a pair
  (scale float[F], offset float[F]) gives a * scale + offset (e.g. MINER's 'set to the minimum')."""
  if isinstance(mask, (tuple, list)):
    scale, offset = mask
    return a * scale.astype(a.dtype) + offset.astype(a.dtype)
  return a * mask.astype(a.dtype)


class GatedMLP(nn.Module):
  """SwiGLU: down(act(gate(x)) * up(x)). The neuron is act(gate(x)), before the product."""
  hidden: int
  act: str = "silu"
  use_bias: bool = False
  policy: Policy = Policy()

  @nn.compact
  def __call__(self, x, mask=None):
    """x float[B, T, D], mask float[F], (scale, offset) or None -> (y float[B, T, D], neurons float[B, T, F])."""
    p = self.policy
    a = activation(self.act)(Dense(features=self.hidden, use_bias=self.use_bias, policy=p, name="gate")(x))
    if mask is not None:
      a = apply_mask(a, mask)
    up = Dense(features=self.hidden, use_bias=self.use_bias, policy=p, name="up")(x)
    y = Dense(features=x.shape[-1], use_bias=self.use_bias, policy=p, name="down")(a * up)
    return y, a


class MLP(nn.Module):
  """fc2(act(fc1(x))). The neuron is act(fc1(x)). `out_features` defaults to the input width."""
  hidden: int
  act: str = "gelu"
  out_features: int | None = None
  use_bias: bool = True
  policy: Policy = Policy()

  @nn.compact
  def __call__(self, x, mask=None):
    """x float[..., D], mask float[F], (scale, offset) or None -> (y float[..., D_out], neurons float[..., F])."""
    p = self.policy
    a = activation(self.act)(Dense(features=self.hidden, use_bias=self.use_bias, policy=p, name="fc1")(x))
    if mask is not None:
      a = apply_mask(a, mask)
    y = Dense(features=self.out_features or x.shape[-1], use_bias=self.use_bias, policy=p, name="fc2")(a)
    return y, a
