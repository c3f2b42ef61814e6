"""Abstract (shape-only) params of a HF config via jax.eval_shape: no memory, no weights."""
import jax
import jax.numpy as jnp
import numpy as np

from mmneuron_jax.models.registry import family_for
from mmneuron_jax.nn.attention import causal_mask
from mmneuron_jax.nn.policy import Policy


def abstract_params(config: dict, dtype: str = "float32"):
  """-> pytree of jax.ShapeDtypeStruct for the family's params."""
  family = family_for(config)
  cfg = family.parse_config(config)
  module = family.module(cfg, Policy(dtype, dtype))
  ids = jnp.zeros((1, 8), jnp.int32)
  pos = jnp.zeros((1, 8), jnp.int32)
  v = cfg.vision
  pix = jnp.zeros((1, v.num_channels, v.image_size, v.image_size), jnp.float32)
  fidx = jnp.full((1, 8), -1, jnp.int32)
  init = lambda key: module.init(key, ids, pos, causal_mask(jnp.ones((1, 8))), pixel_values=pix,
                                 feature_index=fidx)["params"]
  return jax.eval_shape(init, jax.random.PRNGKey(0))


def count_params(tree) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))
