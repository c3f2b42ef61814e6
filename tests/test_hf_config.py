"""The hub's config.json files as HF reads them: defaults filled in at every level, the allowlist
(unknown non-default fields raise, naming file / sub-config / field; unknown fields at HF's
defaults pass), full-depth parameter counts equal HF's, eos ids from generation_config.json."""
import copy
import json
import os

import pytest
import torch
import transformers

from mmneuron_jax.convert import hf_config
from mmneuron_jax.convert.checks import UnsupportedConfigError
from mmneuron_jax.models.presets import PRESETS
from mmneuron_jax.models.registry import family_for
from mmneuron_jax.models.shapes import abstract_params, count_params

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
NAMES = sorted(PRESETS)
# name: (text layers, width, intermediate, heads, kv heads, vocab, rms eps, rope theta, probe modules)
EXPECTED = {
    "llava-hf/llava-v1.6-vicuna-7b-hf": (32, 4096, 11008, 32, 32, 32064, 1e-5, 1e4,
                                         {"llm": (32, 11008), "vision": (24, 4096), "projector": (1, 4096)}),
    "llava-hf/llava-v1.6-mistral-7b-hf": (32, 4096, 14336, 32, 8, 32064, 1e-5, 1e6,
                                          {"llm": (32, 14336), "vision": (24, 4096), "projector": (1, 4096)}),
    "Salesforce/instructblip-vicuna-7b": (32, 4096, 11008, 32, 32, 32064, 1e-6, 1e4,
                                          {"llm": (32, 11008), "vision": (39, 6144), "qformer_text": (12, 3072),
                                           "qformer_query": (12, 3072)}),
    "Qwen/Qwen2-VL-7B-Instruct": (28, 3584, 18944, 28, 4, 152064, 1e-6, 1e6, {"llm": (28, 18944), "vision": (32, 5120)}),
    "Qwen/Qwen2.5-VL-7B-Instruct": (28, 3584, 18944, 28, 4, 152064, 1e-6, 1e6, {"llm": (28, 18944), "vision": (32, 3420)}),
    "Qwen/Qwen2-Audio-7B-Instruct": (32, 4096, 11008, 32, 32, 156032, 1e-5, 1e4,
                                     {"llm": (32, 11008), "audio": (32, 5120)}),
    "llava-hf/llava-onevision-qwen2-7b-ov-hf": (28, 3584, 18944, 28, 4, 152128, 1e-6, 1e6,
                                                {"llm": (28, 18944), "vision": (26, 4304), "projector": (1, 3584)}),
}


DERIVED = ("rope_parameters", "layer_types")


def fixture(name: str, file: str = "config.json") -> dict:
  with open(os.path.join(FIXTURES, name.replace("/", "__"), file)) as f:
    return json.load(f)


def parse(config: dict, where: str = "config.json"):
  return family_for(config).Config.from_hf(config, where)


def test_presets_are_the_fixtures():
  for name in NAMES:
    assert PRESETS[name] == fixture(name), name


@pytest.mark.parametrize("name", NAMES)
def test_sparse_hub_config_parses_to_the_real_sizes(name):
  cfg = parse(fixture(name))
  layers, width, inter, heads, kv, vocab, eps, theta, modules = EXPECTED[name]
  t = cfg.text
  assert (t.num_layers, t.hidden_size, t.intermediate_size, t.num_heads, t.num_kv_heads, t.vocab_size) == (
      layers, width, inter, heads, kv, vocab)
  assert t.rms_norm_eps == eps and t.rope_theta == theta and t.head_dim == 128 and not t.tie_word_embeddings
  assert dict(cfg.probe_modules) == modules
  filled, _ = hf_config.fill(fixture(name))
  assert parse(filled) == cfg  # a filled config fills to itself


def _sub_configs(config):
  return [None] + [k for k in hf_config.SUB_CONFIGS if k in config]


@pytest.mark.parametrize("name", NAMES)
def test_unknown_non_default_field_raises_naming_file_subconfig_field(name):
  for sub in _sub_configs(fixture(name)):
    config = fixture(name)
    (config[sub] if sub else config)["made_up_feature"] = 7
    with pytest.raises(UnsupportedConfigError) as err:
      parse(config, "ckpt/config.json")
    msg = str(err.value)
    assert msg.startswith("ckpt/config.json") and "made_up_feature=7" in msg, msg
    if sub:
      assert f"ckpt/config.json: {sub}:" in msg, msg


@pytest.mark.parametrize("name", NAMES)
def test_fields_at_hf_defaults_pass_whoever_handles_them(name):
  """Every field HF knows, written out at its default (the layout of a fully saved config), is
  accepted whether a parser handles it or not, and the parse is equal. (Not the v5 forms
  `rope_parameters` / `layer_types`, which HF derives from the file's legacy `rope_theta` etc.)"""
  sparse = fixture(name)
  filled, defaults = hf_config.fill(sparse)
  full = copy.deepcopy(sparse)
  for sub in _sub_configs(sparse):
    target, values = (full[sub], defaults[sub]) if sub else (full, defaults)
    for k, v in values.items():
      if k not in hf_config.SUB_CONFIGS + DERIVED and k not in target:
        target[k] = copy.deepcopy(v)
  assert parse(full) == parse(sparse)


def test_unsupported_value_of_a_known_field_still_raises():
  config = fixture("llava-hf/llava-v1.6-vicuna-7b-hf")
  config["text_config"]["mlp_bias"] = True
  with pytest.raises(UnsupportedConfigError, match="mlp_bias"):
    parse(config)
  config = fixture("Qwen/Qwen2-Audio-7B-Instruct")
  config["audio_config"]["activation_function"] = "swish_magic"
  with pytest.raises(UnsupportedConfigError, match="activation_function"):
    parse(config)
  config = fixture("Qwen/Qwen2-VL-7B-Instruct")
  config["use_sliding_window"] = True
  with pytest.raises(UnsupportedConfigError, match="use_sliding_window"):
    parse(config)


@pytest.mark.parametrize("name", NAMES)
def test_full_depth_param_count_equals_hf_meta(name):
  """jax.eval_shape of the full-depth sparse hub config == sum(p.numel()) of HF's model on meta."""
  config = fixture(name)
  ours = count_params(abstract_params(config))
  hf_cfg = transformers.AutoConfig.for_model(config["model_type"], **{k: v for k, v in config.items() if k != "model_type"})
  with torch.device("meta"):
    hf = getattr(transformers, config["architectures"][0])(hf_cfg)  # the hub file names its HF class
  assert ours == sum(p.numel() for p in hf.parameters())
  assert 7.0e9 < ours < 8.5e9


def test_eos_ids_come_from_generation_config_then_the_filled_config():
  from mmneuron_jax.api import read_config
  expected = {"llava-hf/llava-v1.6-vicuna-7b-hf": (2,), "llava-hf/llava-v1.6-mistral-7b-hf": (2,),
              "Salesforce/instructblip-vicuna-7b": (1,), "Qwen/Qwen2-VL-7B-Instruct": (151645, 151643),
              "Qwen/Qwen2.5-VL-7B-Instruct": (151645, 151643),
              "Qwen/Qwen2-Audio-7B-Instruct": (151643, 151645), "llava-hf/llava-onevision-qwen2-7b-ov-hf": (151645,)}
  for name, eos in expected.items():
    config = read_config(os.path.join(FIXTURES, name.replace("/", "__")))
    assert hf_config.eos_token_ids(config, config.get(hf_config.GENERATION_CONFIG)) == eos, name
  # Without generation_config.json: the filled text config's (LlamaConfig's default 2 for Vicuna).
  filled, _ = hf_config.fill(fixture("llava-hf/llava-v1.6-vicuna-7b-hf"))
  assert hf_config.eos_token_ids(filled) == (2,)
  with pytest.raises(UnsupportedConfigError, match="eos_token_id"):
    hf_config.eos_token_ids({"text_config": {"eos_token_id": None}})


def test_parsing_leaves_the_callers_dict_unchanged():
  """HF config classes edit nested dicts they are given (Qwen2-VL's rope fields did); a preset or a
  parsed config.json must be the same dict after parsing (compared as canonical JSON)."""
  import json
  from mmneuron_jax.models import presets, registry
  for name, cfg in presets.PRESETS.items():
    before = json.dumps(cfg, sort_keys=True)
    registry.family_for(cfg).Config.from_hf(cfg)
    assert json.dumps(cfg, sort_keys=True) == before, name
