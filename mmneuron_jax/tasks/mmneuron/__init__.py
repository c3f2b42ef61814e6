"""The MMNeuron study end to end: domain statistics -> DAPE neuron sets -> deactivation
-> logit lens -> report.md with plots, all in one run directory.

Model-family specifics (inputs, vision-token cost, conditions, prompts, demo checkpoint) come from
`tasks/common/families.py`; the stages below are the same for every family. Stages run in order; each
takes the `Study` and earlier results and writes its own files (`config.stages` picks them).
Statistics, evaluation and lens read their own splits (`config.stats.split`, `eval.split`,
`lens.split`; the authors' train / val / train), and `records_used.json` lists the record ids each
stage used.
"""
import dataclasses
import functools
from typing import Any

import numpy as np
from absl import logging

from mmneuron_jax.analysis import dape
from mmneuron_jax.io.accumulate import accumulate
from mmneuron_jax.analysis.neuron_sets import NeuronSet
from mmneuron_jax.analysis.stats import counts_for_dape, store_spec
from mmneuron_jax.errors import UserError
from mmneuron_jax.io import paths, run_dir
from mmneuron_jax.io.stats_store import StatsStore
from mmneuron_jax.tasks import atlas, readouts
from mmneuron_jax.tasks.common import data_checks, deactivation, sources, tables
from mmneuron_jax.tasks.mmneuron import domain_stats, lens, report
from mmneuron_jax.tasks.readouts import report as readouts_report


@dataclasses.dataclass
class Study:
  """Everything the stages share: config, run directory, model, inputs builder, family, records.
  splits: stage ('stats' | 'eval' | 'lens') -> {domain: records of that stage's split};
  by_domain: the statistics split's (what the optional tuned lens trains on)."""
  config: Any
  workdir: str
  model: Any
  inputs: Any
  family: Any
  model_id: str
  domains: list
  by_domain: dict
  bad: list
  splits: dict = dataclasses.field(default_factory=dict)
  used: dict = dataclasses.field(default_factory=dict)
  used_counts: dict = dataclasses.field(default_factory=dict)

  def records(self, stage: str) -> dict:
    return self.splits.get(stage, self.by_domain)

  def mark_used(self, stage: str, records_by_domain: dict):
    """Record the ids `stage` used and rewrite workdir/records_used.json."""
    self.used[stage] = [r.id for v in records_by_domain.values() for r in v]
    self.used_counts[stage] = {d: len(v) for d, v in records_by_domain.items()}
    paths.write_json(paths.join(self.workdir, "records_used.json"), self.used, indent=1)

  @property
  def params(self):
    return self.model.params

  def eval_prompt(self, record) -> str:
    return self.family.eval_prompt(record, self.config.eval)


def open_study(config, workdir: str) -> Study:
  stage_split = {"stats": config.stats.get("split", "train"), "eval": config.eval.get("split", "val"),
                 "lens": config.lens.get("split", "train")}
  loaded, bad = {}, []
  for split in dict.fromkeys(stage_split.values()):
    loaded[split], split_bad = sources.load_records(config, workdir, split)
    bad += [b for b in split_bad if b not in bad]
  everything = list({r.id: r for recs in loaded.values() for r in recs}.values())
  model, inputs, model_id, family = sources.load_model(config, workdir, everything)
  domains = list(config.data.domains)
  splits = {stage: {d: [r for r in loaded[split] if r.domain == d] for d in domains}
            for stage, split in stage_split.items()}
  if "eval" in tuple(config.stages):  # evaluation records need an answer to score against
    for d, recs in splits["eval"].items():
      splits["eval"][d], no_answer = data_checks.unusable_answers(recs)
      bad += [b for b in no_answer if b not in bad]
  for stage, split in stage_split.items():
    logging.info("%s (%s): %s split %r, records per domain %s", model_id, family.name, stage, split,
                 {d: len(v) for d, v in splits[stage].items()})
  if paths.exists(paths.join(workdir, "records_used.json")):
    paths.remove(paths.join(workdir, "records_used.json"))
  return Study(config, workdir, model, inputs, family, model_id, domains, splits["stats"], bad, splits)


def select_sets(totals: dict, model, model_id: str, domains: list[str], dape_cfg) -> dict:
  """{module: NeuronSet} from accumulated counts with DAPE."""
  sets = {}
  for module, (layers, width) in model.probe_modules.items():
    counts, n_tokens = counts_for_dape(totals, module)
    empty = [d for d, n in zip(domains, np.asarray(n_tokens).tolist()) if not n > 0]
    if empty:
      raise UserError(f"module {module}: no tokens were counted for domain(s) {empty}; check that these "
                      "domains have records (config.data.domains) and stats.positions")
    mask = dape.select(counts, n_tokens, top_rate=dape_cfg.top_rate, filter_rate=dape_cfg.filter_rate,
                       bar_ratio=dape_cfg.bar_ratio)
    sets[module] = NeuronSet(model_id=model_id, module=module, group_names=list(domains), layers=layers,
                             width=width, mask=np.asarray(mask, bool),
                             meta={"method": "dape", "top_rate": dape_cfg.top_rate,
                                   "filter_rate": dape_cfg.filter_rate, "bar_ratio": dape_cfg.bar_ratio,
                                   "n_tokens": np.asarray(n_tokens).tolist()})
  return sets


def stage_stats(study: Study):
  """Resumable per-domain statistics in workdir/stats -> (totals, per-domain plan summary)."""
  c = study.config
  recs = {d: v[:c.stats.max_samples_per_domain or None] for d, v in study.records("stats").items()}
  # lazily: planning stops at the token target, so only the images it takes are opened
  sizes = {d: (sources.image_size(r) for r in v) for d, v in recs.items()}
  batches, stats_plan = domain_stats.plan(recs, sizes, study.inputs.num_vision_tokens, c.stats.batch_size,
                                          c.stats.max_samples_per_domain or None,
                                          c.stats.vision_tokens_per_domain or None)
  step = domain_stats.make_step_fn(study.model, study.params, study.inputs, recs, study.family.stats_prompt,
                                   sources.load_image, len(study.domains), c.stats.batch_size,
                                   c.stats.positions == "image")
  names = list(recs)
  used = {d: [] for d in names}
  for b in batches:
    used[names[b.domain]] += [recs[names[b.domain]][i] for i in b.indices]
  checkpoint = c.model.path or paths.local_scratch(study.workdir, "demo_checkpoint")
  prompts = {d: [study.family.stats_prompt(r) for r in v] for d, v in used.items()}
  fields = domain_stats.fingerprint_fields(checkpoint, c, study.domains, used, prompts, batches)
  store = StatsStore.open_or_create(paths.join(study.workdir, "stats"),
                                    store_spec(study.model.probe_modules, len(study.domains)), fields,
                                    overwrite=bool(c.get("overwrite", False)))
  run_dir.accept(c, study.workdir)
  totals = accumulate(store, ((i + 1, b) for i, b in enumerate(batches)), step.run, commit_every=c.stats.commit_every,
                      total=len(batches), desc="domain statistics (batches)", prepare=step.prepare,
                      prefetch=c.stats.prefetch)
  study.mark_used("stats", used)
  return totals, stats_plan


def stage_select(study: Study, totals: dict):
  """DAPE neuron sets -> workdir/neurons/<module>.json (+ .pt); returns (sets, summaries)."""
  sets = select_sets(totals, study.model, study.model_id, study.domains, study.config.dape)
  set_dir = paths.join(study.workdir, "neurons")
  paths.makedirs(set_dir)
  skipped = []
  for module, s in sets.items():
    s.save(paths.join(set_dir, f"{module}.json"))
    try:
      s.export_torch(paths.join(set_dir, f"{module}.pt"))
    except ImportError:
      skipped.append(module)
  if skipped:
    logging.warning("torch not installed: skipped the PyTorch export (.pt) of %s", ", ".join(skipped))
  return sets, {m: dape.summary(s.mask, study.domains) for m, s in sets.items()}


def stage_eval(study: Study, sets: dict) -> list:
  """Deactivation under the family's conditions -> workdir/deactivation.json; returns the rows."""
  c = study.config
  eval_recs = {d: v[:c.eval.n_per_domain or None] for d, v in study.records("eval").items()}
  study.mark_used("eval", eval_recs)
  random_sets = {m: s.random_like(c.seed) for m, s in sets.items()}
  score = functools.partial(sources.score, metric=c.eval.get("metric", "authors"))
  rows, predictions = deactivation.evaluate(
      study.model, study.params, study.inputs, eval_recs, sets, random_sets, study.eval_prompt, sources.load_image,
      score, conditions=study.family.conditions, batch_size=c.eval.batch_size,
      max_new_tokens=c.eval.max_new_tokens, temperature=c.eval.temperature, seed=c.seed,
      max_length=c.eval.get("max_length", 0), prompt_image_tokens=study.family.prompt_image_tokens)
  paths.write_json(paths.join(study.workdir, "deactivation.json"),
                   {"conditions": {k: list(v) for k, v in study.family.conditions.items()}, "rows": rows,
                    "predictions": {"|".join(k): v for k, v in predictions.items()}}, indent=1)
  tables.write_tables(paths.join(study.workdir, "deactivation.json"), {"": rows})
  return rows


def stage_lens(study: Study) -> dict:
  """Logit lens per domain (the lens split, `config.lens.prompt`, at `config.lens.positions`) ->
  workdir/logit_lens.json; returns the results."""
  c = study.config
  recs = {d: v[:c.lens.n_per_domain or None] for d, v in study.records("lens").items()}
  study.mark_used("lens", recs)
  prompt = functools.partial(study.family.lens_prompt, lens_cfg=c.lens)
  results = {d: lens.domain_lens(study.model, study.params, study.inputs, v, prompt, sources.load_image,
                                 c.eval.batch_size, c.lens.top_k, c.lens.get("positions", "all"))
             for d, v in recs.items()}
  paths.write_json(paths.join(study.workdir, "logit_lens.json"),
                   {d: {k: np.asarray(v).tolist() for k, v in r.items()} for d, r in results.items()}, indent=1)
  tables.write_tables(paths.join(study.workdir, "logit_lens.json"), {"": lens.table(results)})
  return results


def run(config, workdir: str) -> str:
  study = open_study(config, workdir)
  stages = tuple(config.stages)
  totals, stats_plan = stage_stats(study)
  if "select" not in stages:
    return paths.join(workdir, "stats")
  sets, summaries = stage_select(study, totals)
  rows = stage_eval(study, sets) if "eval" in stages else []
  lens_results = stage_lens(study) if "lens" in stages else {}
  if "atlas" in stages:  # optional: per-neuron top examples as a static site (tasks/atlas/)
    atlas.stage(study, sets)
  # Optional, beyond the papers: tuned vs logit lens (tasks/readouts/), off by default.
  tuned = readouts.mmneuron_tuned_lens(study) if "tuned_lens" in stages else None
  return report.write(workdir, config=config, model_id=study.model_id, domains=study.domains, bad=study.bad,
                      used=study.used, used_counts=study.used_counts, family=study.family,
                      stats_plan=stats_plan, totals=totals, sets=sets, summaries=summaries, rows=rows,
                      lens_results=lens_results, conditions=study.family.conditions, tuned_lens=tuned,
                      extra_sections=[readouts_report.mmneuron_tuned_lens_section])
