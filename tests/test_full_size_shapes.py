"""jax.eval_shape of the full 7B configs gives HF's real parameter count (no weights needed)."""
import pytest
import torch
import transformers

from mmneuron_jax.models.presets import preset
from mmneuron_jax.models.shapes import abstract_params, count_params


@pytest.mark.parametrize("name", ["llava-hf/llava-v1.6-vicuna-7b-hf", "llava-hf/llava-v1.6-mistral-7b-hf"])
def test_param_count_equals_hf(name):
  config = preset(name)
  ours = count_params(abstract_params(config))
  hf_config = transformers.LlavaNextConfig(**{k: v for k, v in config.items() if k != "model_type"})
  with torch.device("meta"):
    hf = transformers.LlavaNextForConditionalGeneration(hf_config)
  theirs = sum(p.numel() for p in hf.parameters())
  assert ours == theirs
  assert 7.0e9 < ours < 7.6e9


def test_instructblip_param_count_and_budgets_equal_hf():
  """Salesforce/instructblip-vicuna-7b: eval_shape params == HF on the meta device; DAPE budgets at
  1% are docs/ALGORITHMS.md's llm 3523, vision 2396, qformer 369 + 369."""
  from mmneuron_jax.models.mllm.instructblip import InstructBlipConfig
  from mmneuron_jax.analysis.dape import budget
  config = preset("Salesforce/instructblip-vicuna-7b")
  ours = count_params(abstract_params(config))
  hf_config = transformers.InstructBlipConfig(**{k: v for k, v in config.items() if k != "model_type"})
  with torch.device("meta"):
    hf = transformers.InstructBlipForConditionalGeneration(hf_config)
  assert ours == sum(p.numel() for p in hf.parameters())
  assert 7.5e9 < ours < 8.2e9
  modules = InstructBlipConfig.from_hf(config).probe_modules
  assert {m: budget(*modules[m], 0.01) for m in modules} == {
      "llm": 3523, "vision": 2396, "qformer_text": 369, "qformer_query": 369}
