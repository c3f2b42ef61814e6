"""HF `model_type` -> its family module `mmneuron_jax.models.mllm.<model_type>` (a naming convention,
not a table: a new family is a new file). Every family module exports the same names, `CHECKLIST`
(docs/ADDING_A_FAMILY.md; tests/test_family_conformance.py checks them)."""
import importlib
import pkgutil
import types

from mmneuron_jax.models import mllm

# The names every `models/mllm/<family>.py` exports.
CHECKLIST = (
    "NAME",            # str: the HF model_type, equal to the module's name
    "Config",          # frozen dataclass: `Config.from_hf(config.json dict)`, `.probe_modules` {name: (L, F)}
    "Module",          # flax module `Module(cfg=, policy=)`; class constants `extra_inputs`,
                       # `generation_keeps_position_ids` (generate prefills with the prepared position_ids)
    "PROBE_MODULES",   # tuple[str]: the keys of `Config.probe_modules`, in order
    "hf_rules",        # cfg -> [convert.mapping.Rule]: our param path <- HF tensor name(s)
    "IGNORE",          # tuple[str]: regexes of checkpoint tensors HF itself drops
    "prepare",         # (cfg, batch) -> prepared batch (host-side numpy); idempotent
    "token_groups",    # (cfg, prepared, sample_groups, media_only) -> {module: int32[...tokens]}
    "init_inputs",     # (cfg, tokens=8) -> (args, kwargs) of `Module.init` (shape-only init)
    "TOKEN_IDS",       # {'special_ids', 'image_ids', 'video_ids', 'audio_ids': tuple[int]} of the real tokenizer
)


def names() -> list[str]:
  """Every family: the modules of `mmneuron_jax.models.mllm`."""
  return sorted(m.name for m in pkgutil.iter_modules(mllm.__path__) if not m.name.startswith("_"))


def family(name: str, where: str = "model_type") -> types.ModuleType:
  """The family module `mmneuron_jax.models.mllm.<name>`; an unknown name raises naming the choices."""
  if name not in names():
    raise ValueError(f"{where}={name!r} is not supported; supported: {names()}")
  return importlib.import_module(f"mmneuron_jax.models.mllm.{name}")


def family_for(config: dict, where: str = "config.json") -> types.ModuleType:
  """The family module of a HF config dict (its `model_type`)."""
  return family(config.get("model_type"), f"{where}: model_type")
