"""Task "readouts": tuned lens, layer probes and learned masks on one model + records,
with a report.md and plots in the run directory.

Stages (config.stages): 'tuned_lens' (train translators, save with orbax, reload by name, compare
with the logit lens on held-out records), 'probes' (per-layer linear probes of domain / modality),
'masks' (learned removal masks per domain, compared with the DAPE sets of `config.compare_sets_dir`).
They live in lens.py, probes.py and masks.py (batches and positions in data.py); this module keeps
the setup, `run` and the MMNeuron hook.
"""
import os

import numpy as np

from mmneuron_jax import loading
from mmneuron_jax.data.synthetic import planted_llm
from mmneuron_jax.io import paths, run_dir
from mmneuron_jax.tasks.common import families, sources, tables
from mmneuron_jax.tasks.readouts import report as readouts_report
from mmneuron_jax.tasks.readouts.lens import stage_tuned_lens
from mmneuron_jax.tasks.readouts.masks import stage_masks
from mmneuron_jax.tasks.readouts.probes import stage_probes


def load_setup(config, workdir):
  """-> (model, inputs, model_id, records by domain, domains, bad records). `data.source`:
  'planted' (the hue -> answer circuit of `data/synthetic/planted_llm.py`, built in the workdir) or any
  MMNeuron source ('demo', 'records', 'paper')."""
  if config.data.source == "planted":
    domains = list(config.planted.hues)
    records = planted_llm.hue_records(domains, config.data.n_per_domain or 8, config.data.seed)
    path = config.model.path or paths.local_scratch(workdir, "planted_checkpoint")  # the loader memory-maps it
    if not os.path.exists(os.path.join(path, "config.json")):
      planted_llm.build(path, domains, seed=config.model.seed, llm_layer=config.planted.llm_layer,
                        per_domain=config.planted.per_domain, vision_layer=config.planted.vision_layer)
    model = loading.load_for_config(path, config)  # as sources.load_model does for the other sources
    fam = families.family(model.family, f"{path}: model_type")
    inputs, model_id, bad = fam.make_inputs(path, config, model.config), config.model.id or "planted/tiny-llava-next", []
  else:
    domains = list(config.data.domains)
    records, bad = sources.load_records(config, workdir)
    model, inputs, model_id, fam = sources.load_model(config, workdir, records)
  by_domain = {d: [r for r in records if r.domain == d] for d in domains}
  missing = [d for d, v in by_domain.items() if not v]
  if missing:
    raise ValueError(f"config.data.domains: no records for {missing}; domains present: "
                     f"{sorted({r.domain for r in records})}")
  return model, inputs, model_id, by_domain, domains, bad, fam


def prompt_fn_for(config, fam):
  """config.prompt 'stats' -> "<image>\\n{question}"; 'eval' -> the family's evaluation prompt
  (`config.eval.template` / `style`, '' = the family default)."""
  if config.prompt == "stats":
    return fam.stats_prompt
  if config.prompt == "eval":
    return lambda r: fam.eval_prompt(r, config.eval)
  raise ValueError(f"config.prompt={config.prompt!r}; expected 'stats' or 'eval'")


def _jsonable(x):
  if isinstance(x, dict):
    return {str(k): _jsonable(v) for k, v in x.items() if k not in ("sets", "projection", "projection_labels")}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, np.ndarray):
    return x.tolist()
  if isinstance(x, (np.integer, np.floating, np.bool_)):
    return x.item()
  return x


STAGES = ("tuned_lens", "probes", "masks")


def run(config, workdir: str) -> str:
  unknown = [s for s in config.stages if s not in STAGES]
  if unknown:
    raise ValueError(f"config.stages: unknown {unknown}; the readouts stages are {STAGES}")
  paths.makedirs(workdir)
  run_dir.accept(config, workdir)
  model, inputs, model_id, by_domain, domains, bad, fam = load_setup(config, workdir)
  params = model.params
  prompt_fn = prompt_fn_for(config, fam)
  results = {}
  if "tuned_lens" in config.stages:
    results["tuned_lens"] = stage_tuned_lens(model, params, inputs, by_domain, domains, prompt_fn, config.tuned_lens,
                                             workdir, model_id, batch_size=config.batch_size,
                                             heldout_frac=config.heldout_frac, seed=config.seed)
  if "probes" in config.stages:
    results["probes"] = stage_probes(model, params, inputs, by_domain, domains, prompt_fn, config)
  if "masks" in config.stages:
    results["masks"] = stage_masks(model, params, inputs, by_domain, domains, prompt_fn, config, workdir, model_id)
  paths.write_json(paths.join(workdir, "readouts.json"), _jsonable(results), indent=1)
  tables.write_tables(paths.join(workdir, "readouts.json"), readouts_report.tables(_jsonable(results), domains))
  return readouts_report.write(workdir, config=config, model_id=model_id, domains=domains, bad=bad,
                               model=model, results=results)


def mmneuron_tuned_lens(study) -> dict:
  """The MMNeuron task's optional 'tuned_lens' stage: tuned vs logit lens on the study's records
  (statistics prompt + answer), translators in <workdir>/tuned_lens/, numbers in tuned_lens.json."""
  c = study.config
  result = stage_tuned_lens(study.model, study.params, study.inputs, study.by_domain, study.domains,
                            study.family.stats_prompt, c.tuned_lens, study.workdir, study.model_id,
                            batch_size=c.eval.batch_size, heldout_frac=c.tuned_lens.heldout_frac, seed=c.seed)
  paths.write_json(paths.join(study.workdir, "tuned_lens.json"), _jsonable(result), indent=1)
  tables.write_tables(paths.join(study.workdir, "tuned_lens.json"),
                     {"": readouts_report.tuned_lens_table(_jsonable(result))})
  return result
