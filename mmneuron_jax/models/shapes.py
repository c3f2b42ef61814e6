"""Abstract (shape-only) params of a HF config via jax.eval_shape: no memory, no weights."""
import jax
import numpy as np

from mmneuron_jax.models.registry import family_for
from mmneuron_jax.nn.policy import Policy


def abstract_params(config: dict, dtype: str = "float32"):
  """-> pytree of jax.ShapeDtypeStruct for the family's params (any family, through its `init_inputs`;
  `config` as in config.json, sparse or filled)."""
  family = family_for(config)
  cfg = family.Config.from_hf(config)
  module = family.Module(cfg=cfg, policy=Policy(dtype, dtype))
  args, kwargs = family.init_inputs(cfg)
  return jax.eval_shape(lambda key: module.init(key, *args, **kwargs)["params"], jax.random.PRNGKey(0))


def count_params(tree) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))
