"""HF `model_type` -> family: config parser, module, conversion rules, host-side prepare."""
import dataclasses
from typing import Any, Callable


@dataclasses.dataclass(frozen=True)
class Family:
  name: str
  parse_config: Callable[[dict], Any]
  module: Callable[..., Any]
  rules: Callable[[Any], list]
  prepare: Callable[[Any, dict], dict]
  token_groups: Callable[..., dict]
  ignore: tuple[str, ...] = ()


def _llava_next():
  from mmneuron_jax.models.mllm import llava_next
  return Family("llava_next", llava_next.LlavaNextConfig.from_hf, llava_next.LlavaNext, llava_next.hf_rules,
                llava_next.prepare, llava_next.token_groups)


def _qwen2_vl():
  from mmneuron_jax.models.mllm import qwen2_vl
  # A tied checkpoint may still hold a copy of the embedding as lm_head.weight; HF discards it too.
  return Family("qwen2_vl", qwen2_vl.Qwen2VLConfig.from_hf, qwen2_vl.Qwen2VL, qwen2_vl.hf_rules, qwen2_vl.prepare,
                qwen2_vl.token_groups, ignore=(r"^lm_head\.weight$",))


FAMILIES: dict[str, Callable[[], Family]] = {"llava_next": _llava_next, "qwen2_vl": _qwen2_vl}


def _instructblip():
  from mmneuron_jax.models.mllm import instructblip
  return Family("instructblip", instructblip.InstructBlipConfig.from_hf, instructblip.InstructBlip,
                instructblip.hf_rules, instructblip.prepare, instructblip.token_groups, instructblip.IGNORE)


FAMILIES["instructblip"] = _instructblip


def _qwen2_audio():
  from mmneuron_jax.models.mllm import qwen2_audio
  return Family("qwen2_audio", qwen2_audio.Qwen2AudioConfig.from_hf, qwen2_audio.Qwen2Audio, qwen2_audio.hf_rules,
                qwen2_audio.prepare, qwen2_audio.token_groups)


FAMILIES["qwen2_audio"] = _qwen2_audio


def family_for(config: dict, where: str = "config.json") -> Family:
  model_type = config.get("model_type")
  if model_type not in FAMILIES:
    raise ValueError(f"{where}: model_type={model_type!r} is not supported; supported: {sorted(FAMILIES)}")
  return FAMILIES[model_type]()
