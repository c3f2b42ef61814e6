"""Every family module exports the registry's checklist with the right types, and the registry
finds families by module name only (no table to edit)."""
import dataclasses
import inspect

import flax.linen as nn
import jax
import pytest

from mmneuron_jax.data import inputs as data_inputs, synthetic
from mmneuron_jax.data.inputs.chat import ChatSpec
from mmneuron_jax.models import presets, registry, shapes

FAMILIES = registry.names()


def test_the_families_are_the_mllm_modules():
  assert FAMILIES == ["instructblip", "llava_next", "llava_onevision", "qwen2_5_vl", "qwen2_audio", "qwen2_vl"]
  with pytest.raises(ValueError, match="model_type='gpt2' is not supported"):
    registry.family_for({"model_type": "gpt2"})


@pytest.mark.parametrize("name", FAMILIES)
def test_family_exports_the_checklist(name):
  fam = registry.family(name)
  missing = [k for k in registry.CHECKLIST if not hasattr(fam, k)]
  assert not missing, f"models/mllm/{name}.py lacks {missing}"
  assert fam.NAME == name
  assert dataclasses.is_dataclass(fam.Config) and callable(fam.Config.from_hf)
  assert isinstance(fam.Config.probe_modules, property)
  assert issubclass(fam.Module, nn.Module)
  assert isinstance(fam.Module.extra_inputs, tuple)
  assert isinstance(fam.Module.generation_keeps_position_ids, bool)
  assert isinstance(fam.PROBE_MODULES, tuple) and all(isinstance(m, str) for m in fam.PROBE_MODULES)
  assert isinstance(fam.IGNORE, tuple) and all(isinstance(p, str) for p in fam.IGNORE)
  assert set(fam.TOKEN_IDS) == {"special_ids", "image_ids", "video_ids", "audio_ids"}
  assert all(isinstance(v, tuple) and all(isinstance(i, int) for i in v) for v in fam.TOKEN_IDS.values())
  for fn, arity in ((fam.hf_rules, 1), (fam.prepare, 2), (fam.token_groups, 4), (fam.init_inputs, 2)):
    assert callable(fn) and len(inspect.signature(fn).parameters) == arity, fn


@pytest.mark.parametrize("name", FAMILIES)
def test_family_presets_parse_and_init(name):
  """Each family has a full-size preset; its probe modules are PROBE_MODULES and `init_inputs` builds
  every param `hf_rules` maps (shape-only)."""
  fam = registry.family(name)
  configs = [presets.preset(k) for k, c in presets.PRESETS.items() if c["model_type"] == name]
  assert configs, f"models/presets.py has no {name} checkpoint"
  cfg = fam.Config.from_hf(configs[0])
  assert tuple(cfg.probe_modules) == fam.PROBE_MODULES
  params = shapes.abstract_params(configs[0])
  paths = {tuple(k.key for k in path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]}
  assert {r.path for r in fam.hf_rules(cfg)} == paths


@pytest.mark.parametrize("name", FAMILIES)
def test_family_has_its_data_layer(name):
  """data/inputs/<family>.py exports the data checklist; data/synthetic/demo_<family>.py writes its
  demo checkpoint."""
  inputs = data_inputs.family(name)
  missing = [k for k in data_inputs.CHECKLIST if not hasattr(inputs, k)]
  assert not missing, f"data/inputs/{name}.py lacks {missing}"
  assert inspect.isclass(inputs.Inputs) and callable(inputs.Inputs.from_pretrained)
  assert inputs.vision_tokens is None or callable(inputs.vision_tokens)
  assert inputs.CHAT is None or (isinstance(inputs.CHAT, ChatSpec) and inputs.CHAT.name == name)
  assert callable(synthetic.demo_writer(name).build_demo_checkpoint)
