"""load_hf / convert / load: both weight layouts, sharded files, roundtrip, and clear errors."""
import json
import os

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import hf_tiny
import mmneuron_jax


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("llava"))
  hf = hf_tiny.build_llava_next(path)
  return path, hf


def copy_checkpoint(src, dst, edit_state=None, edit_config=None):
  os.makedirs(dst, exist_ok=True)
  state = load_file(os.path.join(src, "model.safetensors"))
  with open(os.path.join(src, "config.json")) as f:
    config = json.load(f)
  if edit_state:
    state = edit_state(state)
  if edit_config:
    edit_config(config)
  save_file(state, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
  with open(os.path.join(dst, "config.json"), "w") as f:
    json.dump(config, f)
  return dst


def assert_trees_equal(a, b):
  la, lb = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
  assert [p for p, _ in la] == [p for p, _ in lb]
  for (p, x), (_, y) in zip(la, lb):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(p))


def new_layout(state):
  """Rename the saved (older) names to transformers v5's in-memory layout."""
  out = {}
  for k, v in state.items():
    k = (k.replace("language_model.model.", "model.language_model.").replace("language_model.lm_head.", "lm_head.")
         .replace("vision_tower.", "model.vision_tower.").replace("multi_modal_projector.", "model.multi_modal_projector.")
         .replace("image_newline", "model.image_newline"))
    out[k] = v
  return out


def test_both_weight_layouts_give_same_params(checkpoint, tmp_path):
  path, _ = checkpoint
  renamed = copy_checkpoint(path, str(tmp_path / "v5"), edit_state=new_layout)
  assert any(k.startswith("model.language_model.") for k in load_file(os.path.join(renamed, "model.safetensors")))
  assert_trees_equal(mmneuron_jax.load_hf(path).params, mmneuron_jax.load_hf(renamed).params)


def test_sharded_checkpoint(checkpoint, tmp_path):
  path, hf = checkpoint
  sharded = str(tmp_path / "sharded")
  hf.save_pretrained(sharded, max_shard_size="100KB")
  assert os.path.exists(os.path.join(sharded, "model.safetensors.index.json"))
  assert_trees_equal(mmneuron_jax.load_hf(path).params, mmneuron_jax.load_hf(sharded).params)


def test_convert_load_roundtrip_is_exact(checkpoint, tmp_path):
  path, _ = checkpoint
  model = mmneuron_jax.load_hf(path)
  out = mmneuron_jax.convert_checkpoint(path, str(tmp_path / "orbax"))
  restored = mmneuron_jax.load(out)
  assert_trees_equal(model.params, restored.params)
  assert restored.probe_modules == model.probe_modules
  assert restored.source == model.source == os.path.abspath(path)  # Model.inputs reads its tokenizer there
  batch = hf_tiny.llava_next_batch(hf_tiny.llava_next_config(), [(40, 90)], [4])
  np.testing.assert_array_equal(np.asarray(model.apply(model.params, batch).logits),
                                np.asarray(restored.apply(restored.params, batch).logits))


def test_load_on_mesh_takes_the_task_arguments(checkpoint, tmp_path):
  """The tasks' one loading call: HF or converted dir, with or without a mesh, policy options."""
  from mmneuron_jax import sharding
  path, _ = checkpoint
  out = mmneuron_jax.convert_checkpoint(path, str(tmp_path / "orbax"))
  reference = mmneuron_jax.load_hf(path).params
  for where in (path, out):
    for mesh in (None, sharding.make_mesh()):
      model = mmneuron_jax.load_on_mesh(where, mesh, dtype="float32", compute_dtype=None, attention="xla",
                                    fp32_matmul="bf16_9x")
      assert model.module.policy.fp32_matmul == "bf16_9x"
      assert_trees_equal(reference, jax.device_get(model.params))


def test_bfloat16_load(checkpoint):
  path, _ = checkpoint
  model = mmneuron_jax.load_hf(path, dtype="bfloat16")
  assert {x.dtype for x in jax.tree_util.tree_leaves(model.params)} == {np.dtype(jax.numpy.bfloat16)}


def test_missing_tensor_is_named(checkpoint, tmp_path):
  path, _ = checkpoint
  name = "language_model.model.layers.1.mlp.up_proj.weight"
  bad = copy_checkpoint(path, str(tmp_path / "missing"), edit_state=lambda s: {k: v for k, v in s.items() if k != name})
  with pytest.raises(Exception, match=r"layers\.1\.mlp\.up_proj\.weight"):
    mmneuron_jax.load_hf(bad)


def test_extra_tensor_is_named(checkpoint, tmp_path):
  path, _ = checkpoint
  bad = copy_checkpoint(path, str(tmp_path / "extra"),
                        edit_state=lambda s: {**s, "vision_tower.extra_head.weight": np.zeros((2, 2), np.float32)})
  with pytest.raises(Exception, match=r"vision_tower\.extra_head\.weight"):
    mmneuron_jax.load_hf(bad)


@pytest.mark.parametrize("field,value", [
    ("rope_scaling", {"rope_type": "yarn", "factor": 2.0}),
    ("hidden_act", "gelu"),
    ("mlp_bias", True),
])
def test_unsupported_config_field_is_named(checkpoint, tmp_path, field, value):
  path, _ = checkpoint

  def edit(config):
    config["text_config"][field] = value
    config["text_config"].pop("rope_parameters", None) if field == "rope_scaling" else None

  bad = copy_checkpoint(path, str(tmp_path / field), edit_config=edit)
  key = "rope_type" if field == "rope_scaling" else field
  with pytest.raises(ValueError, match=key):
    mmneuron_jax.load_hf(bad)


def test_unsupported_model_type_and_bad_dtype(checkpoint, tmp_path):
  path, _ = checkpoint
  with pytest.raises(ValueError, match="float64"):
    mmneuron_jax.load_hf(path, dtype="float64")
  bad = copy_checkpoint(path, str(tmp_path / "mt"), edit_config=lambda c: c.update(model_type="idefics3"))
  with pytest.raises(ValueError, match="idefics3"):
    mmneuron_jax.load_hf(bad)
  with pytest.raises(FileNotFoundError, match="config.json"):
    mmneuron_jax.load_hf(str(tmp_path / "nowhere"))
