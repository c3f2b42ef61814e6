"""Model inputs named as HF processors name them. A family's builder is `data/inputs/<family>.py`
(the family's HF model_type), found by name; each exports `CHECKLIST`."""
import importlib
import types

CHECKLIST = (
    "Inputs",         # class: `Inputs.from_pretrained(path, **options)` -> builder of HF-named numpy batches
    "vision_tokens",  # (hf config dict, (h, w)) -> vision-encoder tokens of one image, or None (MMNeuron's budget)
    "CHAT",           # `chat.ChatSpec` of its chat-template inputs (MINER), or None
)


def family(name: str) -> types.ModuleType:
  """The inputs module `mmneuron_jax.data.inputs.<name>` of a model family."""
  return importlib.import_module(f"mmneuron_jax.data.inputs.{name}")
