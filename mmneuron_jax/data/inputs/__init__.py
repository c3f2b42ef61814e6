"""Model inputs named as HF processors name them. A family's builder is `data/inputs/<family>.py`
(the family's HF model_type), found by name; each exports `CHECKLIST`. `processor(name, path)` wraps
any family's builder in one call, `(texts, images=, videos=, audios=, padding_side=)` (`Model.inputs`)."""
import importlib
import inspect
import os
import types

import numpy as np

from mmneuron_jax.errors import MissingFile, UserError

CHECKLIST = (
    "Inputs",         # class: `Inputs.from_pretrained(path, **options)` -> builder of HF-named numpy batches;
                      # its `__call__(prompts, <media>=..., padding_side=)` names its media `images` / `videos` /
                      # `audios` (one entry per prompt), and `decode(token_ids)` -> strings
    "vision_tokens",  # (hf config dict, (h, w)) -> vision-encoder tokens of one image, or None (MMNeuron's budget)
    "CHAT",           # `chat.ChatSpec` of its chat-template inputs (MINER), or None
)
MEDIA = ("images", "videos", "audios")
# Any one of these in a checkpoint directory means it carries its tokenizer (HF's file names).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def family(name: str) -> types.ModuleType:
  """The inputs module `mmneuron_jax.data.inputs.<name>` of a model family."""
  return importlib.import_module(f"mmneuron_jax.data.inputs.{name}")


def processor(name: str, path: str | None, **options) -> "Processor":
  """Family `name`'s builder read from the checkpoint directory `path` (its tokenizer and processor
  files), as one `Processor`. `options`: the family's `Inputs.from_pretrained` options. A model without
  such a directory (built from a config or params only) or a directory without a tokenizer is refused."""
  if path is None:
    raise UserError(f"{name}: this model has no checkpoint directory (built from a config / params, not "
                    "`load_hf(path)`), so there are no tokenizer / processor files to build inputs from; load it "
                    "with `mmneuron_jax.load_hf(path)`, or set `model.source` to a directory holding them")
  if not os.path.isdir(path):
    raise MissingFile(f"{path}: the model's source directory does not exist (inputs need its tokenizer / "
                      "processor files)")
  if not any(os.path.isfile(os.path.join(path, f)) for f in TOKENIZER_FILES):
    raise MissingFile(f"{path}: no tokenizer ({' / '.join(TOKENIZER_FILES)}) in the model's source directory; "
                      "inputs need the checkpoint's tokenizer and processor files (HF save_pretrained layout)")
  return Processor(name, family(name).Inputs.from_pretrained(path, **options))


def _per_row(value, n: int, what: str) -> list:
  """One entry per prompt: a list / tuple as given (length checked), a single item for one prompt."""
  if isinstance(value, (list, tuple)):
    if len(value) != n:
      raise ValueError(f"{what}: {len(value)} entries for {n} prompts (one entry, or a list, per prompt)")
    return list(value)
  if n != 1:
    raise ValueError(f"{what}: one item for {n} prompts; pass a list with one entry per prompt")
  return [value]


class Processor:
  """A family's input builder behind one signature: `(texts, images=, videos=, audios=,
  padding_side=) -> {HF name: numpy array}`. `texts`: a prompt or a list of prompts holding the
  family's media markers (`<image>`, `<video>`, `<audio>`); each media argument has one entry per prompt
  (a list where a prompt takes several, as the family allows). `builder`: the family's `Inputs`."""

  def __init__(self, name: str, builder):
    self.name, self.builder = name, builder
    params = inspect.signature(builder.__call__).parameters
    self.takes = tuple(m for m in MEDIA if m in params)
    self.needs = tuple(m for m in self.takes if params[m].default is inspect.Parameter.empty)

  def __call__(self, texts, images=None, videos=None, audios=None, padding_side: str = "right") -> dict:
    if padding_side not in ("left", "right"):
      raise ValueError(f"padding_side={padding_side!r}; expected 'left' or 'right'")
    texts = [texts] if isinstance(texts, str) else list(texts)
    given = {k: v for k, v in (("images", images), ("videos", videos), ("audios", audios)) if v is not None}
    extra = sorted(set(given) - set(self.takes))
    if extra:
      raise ValueError(f"{self.name} inputs take {' / '.join(self.takes) or 'no media'}, not {' / '.join(extra)} "
                       f"(data/inputs/{self.name}.py)")
    missing = [m for m in self.needs if m not in given]
    if missing:
      raise ValueError(f"{self.name} inputs need {' and '.join(missing)} (one per prompt, marked in its text)")
    media = {k: _per_row(v, len(texts), k) for k, v in given.items()}
    return self.builder(texts, padding_side=padding_side, **media)

  def decode(self, token_ids) -> list[str]:
    """int[B, N] generated tokens -> strings (special tokens and padding dropped)."""
    return self.builder.decode(np.asarray(token_ids))
