"""Every parameter over 1 MiB of every family's full-size checkpoints (models/presets.py, shapes only
via jax.eval_shape: no weights) matches a real sharding rule, not the catch-all: a renamed param
fails here with its path instead of silently becoming replicated."""
import re

import jax
import numpy as np
import pytest

from mmneuron_jax.models import presets, registry, shapes
from mmneuron_jax.sharding.rules import PARAM_AXES, path_str

FALLBACK = r".*"
assert PARAM_AXES[-1][0] == FALLBACK


@pytest.mark.parametrize("hub_id", sorted(presets.PRESETS))
def test_large_params_match_a_real_rule(hub_id):
  config = presets.preset(hub_id)  # a copy: parsing may fill the dict in place
  params = shapes.abstract_params(config)
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  large = [(path_str(p), x.shape) for p, x in leaves if int(np.prod(x.shape)) * x.dtype.itemsize > 2**20]
  assert len(large) >= 10  # the towers' stacked layers at least
  uncovered = [(p, s) for p, s in large if next(pat for pat, _ in PARAM_AXES if re.search(pat, p)) == FALLBACK]
  assert not uncovered, f"{hub_id}: params over 1 MiB that only the catch-all rule matches: {uncovered}"


def test_every_family_has_a_preset():
  assert {c["model_type"] for c in presets.PRESETS.values()} == set(registry.names())
