"""Abstract (shape-only) params of a HF config via jax.eval_shape: no memory, no weights."""
import importlib

import jax
import jax.numpy as jnp
import numpy as np

from mmneuron_jax.models.registry import family_for
from mmneuron_jax.nn.attention import causal_mask
from mmneuron_jax.nn.policy import Policy


def _image_inputs(cfg, tokens: int = 8) -> tuple[tuple, dict]:
  """Dummy init inputs of the image families without an `init_inputs` (LLaVA-NeXT, InstructBLIP)."""
  ids = jnp.zeros((1, tokens), jnp.int32)
  v = cfg.vision
  pix = jnp.zeros((1, v.num_channels, v.image_size, v.image_size), jnp.float32)
  return ((ids, jnp.zeros((1, tokens), jnp.int32), causal_mask(jnp.ones((1, tokens)))),
          {"pixel_values": pix, "feature_index": jnp.full((1, tokens), -1, jnp.int32)})


def abstract_params(config: dict, dtype: str = "float32"):
  """-> pytree of jax.ShapeDtypeStruct for the family's params (any registered family; `config`
  as in config.json, sparse or filled)."""
  family = family_for(config)
  cfg = family.parse_config(config)
  module = family.module(cfg, Policy(dtype, dtype))
  init_inputs = getattr(importlib.import_module(family.module.__module__), "init_inputs", _image_inputs)
  args, kwargs = init_inputs(cfg)
  return jax.eval_shape(lambda key: module.init(key, *args, **kwargs)["params"], jax.random.PRNGKey(0))


def count_params(tree) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))
