"""Orbax params checkpoint: bit-exact roundtrip, metadata, sharded restore, clear errors."""
import json
import os

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from mmneuron_jax.io.checkpoint import META_FILE, restore_params, save_params, saved_shapes


def make_params(seed=0):
  rng = np.random.default_rng(seed)
  f32 = rng.standard_normal((3, 8, 12), np.float32)
  f32[0, 0, :4] = [np.inf, -0.0, 1e-42, np.float32(3.4e38)]  # edge values survive bit-exactly
  return {
      "layers": {"mlp": {"up": {"kernel": jnp.asarray(f32)},
                         "down": {"kernel": jnp.asarray(rng.standard_normal((3, 12, 8)), jnp.bfloat16)}},
                 "norm": {"scale": jnp.asarray(rng.standard_normal((3, 8)), jnp.float16)}},
      "embed": np.asarray(rng.standard_normal((16, 8)), ml_dtypes.bfloat16),  # a numpy leaf is fine too
      "scalar": jnp.float32(2.5),
  }


def flat(tree):
  return {"/".join(str(getattr(k, "key", k)) for k in path): x for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def assert_bit_equal(a, b):
  fa, fb = flat(a), flat(b)
  assert fa.keys() == fb.keys()
  for k in fa:
    x, y = np.asarray(fa[k]), np.asarray(fb[k])
    assert x.dtype == y.dtype and x.shape == y.shape, k
    np.testing.assert_array_equal(x.view(f"u{x.dtype.itemsize}"), y.view(f"u{y.dtype.itemsize}"), err_msg=k)


META = {"hf_config": {"model_type": "llava_next", "text_config": {"num_hidden_layers": 3}},
        "family": "llava_next", "dtype": "bfloat16"}


def test_roundtrip_bit_exact(tmp_path):
  params = make_params()
  out = save_params(tmp_path / "ck", params, META)
  assert os.path.isfile(os.path.join(out, META_FILE))
  restored, meta = restore_params(tmp_path / "ck")
  assert meta == META
  assert_bit_equal(params, restored)
  assert all(isinstance(x, jax.Array) for x in jax.tree_util.tree_leaves(restored))
  assert restored["layers"]["mlp"]["down"]["kernel"].dtype == jnp.bfloat16
  with open(os.path.join(out, META_FILE)) as f:
    assert json.load(f)["metadata"] == META


def test_restore_with_shardings(tmp_path):
  params = make_params(1)
  save_params(tmp_path / "ck", params, META)
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("fsdp",))
  shardings = jax.tree.map(lambda _: jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()),
                           jax.tree.map(jnp.asarray, params))
  abstract = saved_shapes(tmp_path / "ck", shardings)
  assert abstract["layers"]["mlp"]["up"]["kernel"].shape == (3, 8, 12)
  restored, _ = restore_params(tmp_path / "ck", shardings=shardings)
  assert_bit_equal(params, restored)
  for x, s in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(shardings)):
    assert x.sharding == s
  del shardings["embed"]
  with pytest.raises(KeyError, match="embed"):
    restore_params(tmp_path / "ck", shardings=shardings)


def test_errors(tmp_path):
  params = make_params()
  save_params(tmp_path / "ck", params, META)
  with pytest.raises(FileExistsError, match="overwrite"):
    save_params(tmp_path / "ck", params, META)
  params2 = make_params(2)
  save_params(tmp_path / "ck", params2, {"v": 2}, overwrite=True)
  restored, meta = restore_params(tmp_path / "ck")
  assert meta == {"v": 2}
  assert_bit_equal(params2, restored)
  with pytest.raises(TypeError, match="JSON"):
    save_params(tmp_path / "ck2", params, {"bad": object()})
  with pytest.raises(FileNotFoundError, match="does not exist"):
    restore_params(tmp_path / "nowhere")
  os.makedirs(tmp_path / "empty")
  with pytest.raises(FileNotFoundError, match=META_FILE):
    restore_params(tmp_path / "empty")
  with pytest.raises(TypeError, match="not an array"):
    save_params(tmp_path / "ck3", {"a": [1, 2]}, {})
