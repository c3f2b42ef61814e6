"""Public entry points: `load_hf`, `convert_checkpoint`, `load` (`mmneuron_jax.convert` is the conversion
subpackage: reader, rules, checks)."""
import os

from mmneuron_jax.convert import hf_config
from mmneuron_jax.convert.mapping import apply_rules
from mmneuron_jax.convert.safetensors_reader import CheckpointReader
from mmneuron_jax.data import inputs as data_inputs
from mmneuron_jax.errors import MissingFile, read_json
from mmneuron_jax.io.checkpoint import restore_params, save_params
from mmneuron_jax.io.hub import resolve_checkpoint
from mmneuron_jax.models.base import Model
from mmneuron_jax.models.registry import family_for
from mmneuron_jax.nn.policy import Policy, resolve_dtype


def read_config(path: str) -> dict:
  """config.json of a checkpoint directory as HF reads it: every level filled with its config class's
  defaults (`convert.hf_config.fill`); generation_config.json's eos / pad / bos ids, if the file
  exists, under the key `generation_config`."""
  cfg_path = os.path.join(path, "config.json")
  if not os.path.isfile(cfg_path):
    raise MissingFile(f"{cfg_path}: no config.json in the checkpoint directory {path!r}")
  config = read_json(cfg_path, "checkpoint config.json")
  family_for(config, cfg_path)
  config, _ = hf_config.fill(config, cfg_path)
  gen_path = os.path.join(path, "generation_config.json")
  if os.path.isfile(gen_path):
    gen = read_json(gen_path, "generation_config.json")
    config[hf_config.GENERATION_CONFIG] = {k: gen[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")
                                           if gen.get(k) is not None}
  return config


def build_model(config: dict, params, dtype: str = "float32", compute_dtype: str | None = None,
                source: str | None = None, **policy_options) -> Model:
  """A `Model` around converted params for a HF config dict. `source`: the checkpoint directory
  holding its tokenizer / processor files (`Model.inputs`; None: a model without them).
  `policy_options`: the other `Policy` fields (`fp32_matmul`, `attention`)."""
  family = family_for(config)
  cfg = family.Config.from_hf(config)
  policy = Policy(dtype, compute_dtype or dtype, **policy_options)
  module = family.Module(cfg=cfg, policy=policy)
  return Model(family=family.NAME, module=module, params=params, config=config,
               probe_modules=dict(cfg.probe_modules), prepare_fn=lambda batch: family.prepare(cfg, batch),
               groups_fn=lambda prepared, groups, media_only: family.token_groups(cfg, prepared, groups, media_only),
               source=source, inputs_fn=lambda path, **options: data_inputs.processor(family.NAME, path, **options))


def load_hf(path: str, dtype: str = "float32", compute_dtype: str | None = None, shardings=None,
            **policy_options) -> Model:
  """A HF checkpoint (a directory with config.json + *.safetensors, or a hub id `org/name` in the local
  Hugging Face cache: io/hub.py; downloaded only when HF_HUB_OFFLINE is unset) -> Model.

  Every checkpoint tensor must be consumed exactly once; unknown config features raise.
  `policy_options`: `fp32_matmul`, `attention` (see `nn.policy.Policy`).
  """
  resolve_dtype(dtype)
  path = resolve_checkpoint(path)
  config = read_config(path)
  family = family_for(config, os.path.join(path, "config.json"))
  cfg = family.Config.from_hf(config, os.path.join(path, "config.json"))
  params = apply_rules(CheckpointReader(path), family.hf_rules(cfg), dtype, ignore=list(family.IGNORE),
                       shardings=shardings)
  return build_model(config, params, dtype, compute_dtype, source=os.path.abspath(path), **policy_options)


def convert_checkpoint(path: str, out_dir: str, dtype: str = "float32") -> str:
  """HF checkpoint -> orbax checkpoint in `out_dir` (restore with `load`; its `Model.inputs` read the
  tokenizer / processor files from `path`, recorded as `source`)."""
  model = load_hf(path, dtype)
  save_params(out_dir, model.params, {"hf_config": model.config, "family": model.family, "dtype": dtype,
                                      "source": model.source})
  return out_dir


def load(out_dir: str, compute_dtype: str | None = None, shardings=None, **policy_options) -> Model:
  """Restore a `convert_checkpoint` output. `policy_options`: `fp32_matmul`, `attention`."""
  params, meta = restore_params(out_dir, shardings=shardings)
  return build_model(meta["hf_config"], params, meta["dtype"], compute_dtype, source=meta.get("source"),
                     **policy_options)
