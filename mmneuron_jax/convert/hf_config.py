"""A HF config.json read the way HF reads it, and the allowlist every parser applies to it.

The hub stores configs as differences from their config class's defaults (`to_diff_dict`), nested
sub-configs included, so `fill` builds the family's `transformers` config class from the file and
returns its `to_dict()`: every level filled in. `check_fields` is penzai's
`handled_or_ignored_attributes`: every field of a (sub-)config is handled or ignored by name, and
any other field must hold HF's default, else one error names the file, the sub-config and the field.
"""
import copy
import functools
import json

from mmneuron_jax.convert.checks import UnsupportedConfigError

SUB_CONFIGS = ("text_config", "vision_config", "qformer_config", "audio_config")
# Key under which `api.load_hf` keeps generation_config.json's fields next to the config (not a HF field).
GENERATION_CONFIG = "generation_config"

# Fields of every HF config that do not change the forward pass: provenance, the file's dtype
# (the caller picks ours), training-only knobs (dropout, init), runtime flags, labels, special token
# ids (generation reads them; the forward does not).
IGNORED = frozenset({
    "_name_or_path", "architectures", "transformers_version", "torch_dtype", "dtype", "use_bfloat16",
    "_attn_implementation_autoset", "_commit_hash", "use_cache", "output_hidden_states", "output_attentions",
    "return_dict", "torchscript", "chunk_size_feed_forward", "is_encoder_decoder", "is_decoder",
    "add_cross_attention", "cross_attention_hidden_size", "tie_encoder_decoder", "pruned_heads", "problem_type",
    "id2label", "label2id", "finetuning_task", "task_specific_params", "prefix", "tokenizer_class",
    "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id",
    "initializer_range", "initializer_factor", "init_std", "attention_dropout", "dropout", "activation_dropout",
    "hidden_dropout_prob", "attention_probs_dropout_prob", "encoder_layerdrop", "layerdrop", "ignore_index",
    "max_length", "min_length", "do_sample", "early_stopping", "num_beams", "num_beam_groups", "diversity_penalty",
    "temperature", "top_k", "top_p", "typical_p", "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
    "encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences", "output_scores",
    "return_dict_in_generate", "forced_bos_token_id", "forced_eos_token_id", "remove_invalid_values",
    "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens", "tf_legacy_loss",
})


def _config_class(model_type, where: str):
  from transformers import CONFIG_MAPPING
  if model_type not in CONFIG_MAPPING:
    raise UnsupportedConfigError(f"{where}: model_type={model_type!r} is not a transformers config class")
  return CONFIG_MAPPING[model_type]


@functools.lru_cache(maxsize=None)
def _cached_defaults(cls) -> str:
  return json.dumps(cls().to_dict())


def _class_defaults(cls) -> dict:
  """`cls().to_dict()`, a fresh copy each call (HF may edit dicts it is given, e.g. rope fields)."""
  return json.loads(_cached_defaults(cls))


def fill(config: dict, where: str = "config.json") -> tuple[dict, dict]:
  """config.json as a dict -> (filled, defaults).

  filled: `Config(**config).to_dict()` of the family's transformers class: every field and every
  sub-config filled with HF's defaults (a filled config fills to itself). defaults: the same
  structure holding each level's class defaults (a sub-config's defaults are its own class's, the
  ones HF diffs it against).
  """
  cls = _config_class(config.get("model_type"), where)
  # a deep copy: HF config classes edit nested dicts they are given (e.g. rope fields), and the caller's
  # dict (a preset, a parsed file) must stay as it was
  obj = cls(**copy.deepcopy({k: v for k, v in config.items() if k not in ("model_type", GENERATION_CONFIG)}))
  filled = obj.to_dict()
  if config.get(GENERATION_CONFIG) is not None:
    filled[GENERATION_CONFIG] = config[GENERATION_CONFIG]
  defaults = dict(_class_defaults(cls))
  for key in SUB_CONFIGS:
    sub = getattr(obj, key, None)
    if sub is not None and isinstance(filled.get(key), dict):
      defaults[key] = _class_defaults(type(sub))
  return filled, defaults


def check_fields(config: dict, defaults: dict, handled, where: str, ignored=()):
  """Raise naming every field of `config` that is neither handled nor ignored (by name, or in
  IGNORED) and differs from `defaults` (a field HF does not know has no default: it raises)."""
  known = set(handled) | set(ignored) | IGNORED | set(SUB_CONFIGS) | {GENERATION_CONFIG}
  missing = object()
  bad = [f"{name}={value!r} (HF default {defaults.get(name, '<none>')!r})"
         for name, value in sorted(config.items())
         if name not in known and defaults.get(name, missing) != value]
  if bad:
    raise UnsupportedConfigError(f"{where}: field(s) this codebase does not implement, set to a non-default "
                                 "value: " + "; ".join(bad))


def sub_config(filled: dict, defaults: dict, key: str) -> tuple[dict, dict]:
  """(values, defaults) of sub-config `key` of a `fill`ed config."""
  return filled.get(key) or {}, defaults.get(key) or {}


def eos_token_ids(config: dict, generation_config: dict | None = None) -> tuple[int, ...]:
  """End-of-sequence ids: generation_config.json's `eos_token_id` if given, else the (filled)
  text config's, else the top level's. Raises when none is set (never a silent -1)."""
  for source in (generation_config or {}, config.get("text_config") or {}, config):
    eos = source.get("eos_token_id")
    if eos is not None:
      return tuple(int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]))
  raise UnsupportedConfigError("no eos_token_id in generation_config.json or config.json; pass eos_token_id")


def fill_as(config: dict, class_name: str, where: str) -> tuple[dict, dict]:
  """A sub-config dict on its own -> (filled, defaults) through transformers' `class_name`."""
  import transformers
  cls = getattr(transformers, class_name, None)
  if cls is None:
    raise UnsupportedConfigError(f"{where}: this transformers version has no {class_name}")
  return cls(**{k: v for k, v in config.items() if k != "model_type"}).to_dict(), _class_defaults(cls)
