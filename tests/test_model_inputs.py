"""`Model.inputs`: one call builds the HF-named batch of any family from the checkpoint's own files
(equal to the family's `data/inputs/<family>.py` builder called directly, itself checked against HF's
processors in the family tests) that the model's batch checks and `prepare` accept; on the trained
demo `apply` takes it and `generate` gives the same tokens from right- and left-padded batches; models
without tokenizer files are refused. (Each family's forward is compiled in its own parity tests, so the
per-family case here builds the model from config.json alone: no weights, no compile.)"""
import dataclasses
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import mmneuron_jax
from mmneuron_jax.data import inputs as data_inputs
from mmneuron_jax.data import synthetic
from mmneuron_jax.models import input_checks, registry
from mmneuron_jax.tasks.train_demo.cache import bundled_path

TEXTS = {"llava_next": ["USER: <image>\nwhat colour is the car? ASSISTANT:", "USER: <image>\ncount ASSISTANT:"],
         "instructblip": ["what colour is the car?", "count the lesions"],
         "qwen2_vl": ["<|im_start|>user <image> what colour is the car?<|im_end|>", "<|im_start|>user <video> count<|im_end|>"],
         "qwen2_5_vl": ["<|im_start|>user <image> what colour is the car?<|im_end|>", "<|im_start|>user <video> count<|im_end|>"],
         "llava_onevision": ["<|im_start|>user <image>\nwhat colour is the car?<|im_end|>",
                             "<|im_start|>user <image>\ncount<|im_end|>"],
         "qwen2_audio": ["<|im_start|>user Audio 1: <audio> what is said?<|im_end|>", "<|im_start|>user count<|im_end|>"]}


def _image(seed, size=(64, 48)):
  return Image.fromarray(np.random.default_rng(seed).integers(0, 255, size + (3,), dtype=np.uint8))


def _media(name):
  """Keyword media of TEXTS[name] (one entry per prompt)."""
  if name in ("qwen2_vl", "qwen2_5_vl"):
    video = np.random.default_rng(2).integers(0, 255, (2, 56, 56, 3), dtype=np.uint8)
    return {"images": [[_image(0)], []], "videos": [[], [video]]}
  if name == "qwen2_audio":
    return {"audios": [np.random.default_rng(3).normal(size=8000).astype(np.float32) * 0.1, []]}
  return {"images": [_image(0), _image(1, (40, 72))]}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
  root = tmp_path_factory.mktemp("families")
  return {name: synthetic.demo_writer(name).build_demo_checkpoint(str(root / name), [" ".join(TEXTS[name])])
          for name in registry.names()}


@pytest.mark.parametrize("name", registry.names())
def test_inputs_equal_the_family_builder(checkpoints, name):
  path = checkpoints[name]
  model = mmneuron_jax.build_model(mmneuron_jax.api.read_config(path), params=None, source=path)
  for side in ("right", "left"):
    batch = model.inputs(TEXTS[name], padding_side=side, **_media(name))
    builder = data_inputs.family(name).Inputs.from_pretrained(checkpoints[name])
    want = builder(TEXTS[name], padding_side=side, **_media(name))
    assert sorted(batch) == sorted(want)
    for k in want:  # exact: the same builder, reached by model_type
      np.testing.assert_array_equal(batch[k], want[k], err_msg=f"{name} {side} {k}")
    input_checks.check_batch(model, batch)
    assert model.host_batch(batch)["input_ids"].shape == want["input_ids"].shape


def test_generate_takes_either_padding_side():
  """The trained LLaVA-NeXT demo: right- and left-padded batches of prompts of unequal length give the
  same tokens, and the answers decode to the trained ones."""
  model = mmneuron_jax.load_hf(bundled_path("llava_next"))
  assert model.source == os.path.abspath(bundled_path("llava_next"))
  from mmneuron_jax.data.inputs import prompts
  from mmneuron_jax.data.sources.records import load_image
  from mmneuron_jax.data.synthetic import skills
  records = [skills.skills_sample("auto-driving", 0), skills.skills_sample("remote-sensing", 1)]
  texts, images = [prompts.eval_prompt(r) for r in records], [load_image(r) for r in records]
  right = model.inputs(texts, images=images)
  left = model.inputs(texts, images=images, padding_side="left")
  assert not right["attention_mask"][:, -1].all() and left["attention_mask"][:, -1].all()
  tokens = model.generate(model.params, right, max_new_tokens=3)
  np.testing.assert_array_equal(tokens, model.generate(model.params, left, max_new_tokens=3))
  assert model.decode(tokens) == [r.answers[0] for r in records]
  out = model.apply(model.params, right)
  assert out.logits.shape[:2] == right["input_ids"].shape and np.isfinite(np.asarray(out.logits)).all()


def test_refusals(checkpoints, tmp_path):
  path = checkpoints["qwen2_audio"]
  model = mmneuron_jax.build_model(mmneuron_jax.api.read_config(path), params=None, source=path)
  with pytest.raises(ValueError, match="take audios, not images"):
    model.inputs(TEXTS["qwen2_audio"][:1], images=[_image(0)])
  with pytest.raises(ValueError, match="2 entries for 1 prompts"):
    model.inputs(TEXTS["qwen2_audio"][:1], audios=[[], []])
  llava = mmneuron_jax.build_model(mmneuron_jax.api.read_config(checkpoints["llava_next"]), params=None,
                                   source=checkpoints["llava_next"])
  with pytest.raises(ValueError, match="llava_next inputs need images"):
    llava.inputs(["no image here"])
  built = mmneuron_jax.build_model(llava.config, params=None)  # from a config (and params): no files
  with pytest.raises(mmneuron_jax.errors.UserError, match="no checkpoint directory"):
    built.inputs(TEXTS["llava_next"][:1], images=[_image(0)])
  bare = tmp_path / "bare"
  bare.mkdir()
  shutil.copy(os.path.join(checkpoints["llava_next"], "config.json"), bare / "config.json")
  with pytest.raises(mmneuron_jax.errors.MissingFile, match="no tokenizer"):
    dataclasses.replace(llava, source=str(bare), _steps={}).inputs(TEXTS["llava_next"][:1], images=[_image(0)])
