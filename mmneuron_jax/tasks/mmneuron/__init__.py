"""The MMNeuron study end to end: domain statistics -> DAPE neuron sets -> deactivation
-> logit lens -> report.md with plots, all in one run directory.

Model-family specifics (inputs, vision-token cost, conditions, prompts, demo checkpoint) come from
`tasks/common/families.py`; the stages below are the same for every family. Stages run in order; each
takes the `Study` and earlier results and writes its own files (`config.stages` picks them).
"""
import dataclasses
import json
import os
from typing import Any

import numpy as np
from absl import logging

from mmneuron_jax.analysis import dape
from mmneuron_jax.analysis.accumulate import accumulate
from mmneuron_jax.analysis.neuron_sets import NeuronSet
from mmneuron_jax.analysis.stats import counts_for_dape, store_spec
from mmneuron_jax.errors import UserError
from mmneuron_jax.io import run_dir
from mmneuron_jax.io.stats_store import StatsStore
from mmneuron_jax.tasks import readouts
from mmneuron_jax.tasks.common import deactivation, sources
from mmneuron_jax.tasks.mmneuron import domain_stats, lens, report
from mmneuron_jax.tasks.readouts import report as readouts_report


@dataclasses.dataclass
class Study:
  """Everything the stages share: config, run directory, model, inputs builder, family, records."""
  config: Any
  workdir: str
  model: Any
  inputs: Any
  family: Any
  model_id: str
  domains: list
  by_domain: dict
  bad: list

  @property
  def params(self):
    return self.model.params

  def eval_prompt(self, record) -> str:
    return self.family.eval_prompt(record, self.config.eval)


def open_study(config, workdir: str) -> Study:
  records, bad = sources.load_records(config, workdir)
  model, inputs, model_id, family = sources.load_model(config, workdir, records)
  domains = list(config.data.domains)
  by_domain = {d: [r for r in records if r.domain == d] for d in domains}
  logging.info("%s (%s): records per domain %s (bad: %d)", model_id, family.name,
               {d: len(v) for d, v in by_domain.items()}, len(bad))
  return Study(config, workdir, model, inputs, family, model_id, domains, by_domain, bad)


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
  recs = {d: v[:c.stats.max_samples_per_domain or None] for d, v in study.by_domain.items()}
  sizes = {d: [sources.image_size(r) for r in v] for d, v in recs.items()}
  batches, stats_plan = domain_stats.plan(recs, sizes, study.inputs.num_vision_tokens, c.stats.batch_size,
                                          c.stats.max_samples_per_domain or None,
                                          c.stats.vision_tokens_per_domain or None)
  step = domain_stats.make_step_fn(study.model, study.params, study.inputs, recs, study.family.stats_prompt,
                                   sources.load_image, len(study.domains), c.stats.batch_size,
                                   c.stats.positions == "image")
  checkpoint = c.model.path or os.path.join(study.workdir, "demo_checkpoint")
  prompts = {d: [study.family.stats_prompt(r) for r in v] for d, v in recs.items()}
  fields = domain_stats.fingerprint_fields(checkpoint, c, study.domains, recs, prompts, batches)
  store = StatsStore.open_or_create(os.path.join(study.workdir, "stats"),
                                    store_spec(study.model.probe_modules, len(study.domains)), fields,
                                    overwrite=bool(c.get("overwrite", False)))
  run_dir.accept(c, study.workdir)
  totals = accumulate(store, ((i + 1, b) for i, b in enumerate(batches)), step.run, commit_every=c.stats.commit_every,
                      total=len(batches), desc="domain statistics (batches)", prepare=step.prepare,
                      prefetch=c.stats.prefetch)
  return totals, stats_plan


def stage_select(study: Study, totals: dict):
  """DAPE neuron sets -> workdir/neurons/<module>.json (+ .pt); returns (sets, summaries)."""
  sets = select_sets(totals, study.model, study.model_id, study.domains, study.config.dape)
  set_dir = os.path.join(study.workdir, "neurons")
  os.makedirs(set_dir, exist_ok=True)
  for module, s in sets.items():
    s.save(os.path.join(set_dir, f"{module}.json"))
    try:
      s.export_torch(os.path.join(set_dir, f"{module}.pt"))
    except ImportError:
      logging.warning("torch not installed: skipped the PyTorch export of %s", module)
  return sets, {m: dape.summary(s.mask, study.domains) for m, s in sets.items()}


def stage_eval(study: Study, sets: dict) -> list:
  """Deactivation under the family's conditions -> workdir/deactivation.json; returns the rows."""
  c = study.config
  eval_recs = {d: v[:c.eval.n_per_domain] for d, v in study.by_domain.items()}
  random_sets = {m: s.random_like(c.seed) for m, s in sets.items()}
  rows, predictions = deactivation.evaluate(
      study.model, study.params, study.inputs, eval_recs, sets, random_sets, study.eval_prompt, sources.load_image,
      sources.score, conditions=study.family.conditions, batch_size=c.eval.batch_size,
      max_new_tokens=c.eval.max_new_tokens, temperature=c.eval.temperature, seed=c.seed)
  with open(os.path.join(study.workdir, "deactivation.json"), "w") as f:
    json.dump({"conditions": {k: list(v) for k, v in study.family.conditions.items()}, "rows": rows,
               "predictions": {"|".join(k): v for k, v in predictions.items()}}, f, indent=1)
  return rows


def stage_lens(study: Study) -> dict:
  """Logit lens at image tokens per domain -> workdir/logit_lens.json; returns the results."""
  c = study.config
  results = {d: lens.domain_lens(study.model, study.params, study.inputs, v[:c.lens.n_per_domain],
                                 study.family.stats_prompt, sources.load_image, c.eval.batch_size, c.lens.top_k)
             for d, v in study.by_domain.items()}
  with open(os.path.join(study.workdir, "logit_lens.json"), "w") as f:
    json.dump({d: {k: np.asarray(v).tolist() for k, v in r.items()} for d, r in results.items()}, f, indent=1)
  return results


def run(config, workdir: str) -> str:
  study = open_study(config, workdir)
  stages = tuple(config.stages)
  totals, stats_plan = stage_stats(study)
  if "select" not in stages:
    return os.path.join(workdir, "stats")
  sets, summaries = stage_select(study, totals)
  rows = stage_eval(study, sets) if "eval" in stages else []
  lens_results = stage_lens(study) if "lens" in stages else {}
  # Optional, beyond the papers: tuned vs logit lens (tasks/readouts/), off by default.
  tuned = readouts.mmneuron_tuned_lens(study) if "tuned_lens" in stages else None
  return report.write(workdir, config=config, model_id=study.model_id, domains=study.domains, bad=study.bad,
                      stats_plan=stats_plan, totals=totals, sets=sets, summaries=summaries, rows=rows,
                      lens_results=lens_results, conditions=study.family.conditions, tuned_lens=tuned,
                      extra_sections=[readouts_report.mmneuron_tuned_lens_section])
