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
