"""The MMNeuron study end to end: domain statistics -> DAPE neuron sets -> deactivation
-> logit lens -> report.md with plots, all in one run directory."""
import json
import os

import numpy as np
from absl import logging

from mmneuron_jax.analysis import dape
from mmneuron_jax.analysis.neuron_sets import NeuronSet
from mmneuron_jax.analysis.stats import counts_for_dape, store_spec
from mmneuron_jax.io.stats_store import StatsStore
from mmneuron_jax.analysis.accumulate import accumulate
from mmneuron_jax.tasks import deactivation, domain_stats, lens, report, sources


def select_sets(totals: dict, model, model_id: str, domains: list[str], dape_cfg) -> dict:
  """{module: NeuronSet} from accumulated counts with DAPE."""
  sets = {}
  for module, (layers, width) in model.probe_modules.items():
    counts, n_tokens = counts_for_dape(totals, module)
    mask = dape.select(counts, n_tokens, top_rate=dape_cfg.top_rate, filter_rate=dape_cfg.filter_rate,
                       bar_ratio=dape_cfg.bar_ratio)
    sets[module] = NeuronSet(model_id=model_id, module=module, group_names=list(domains), layers=layers,
                             width=width, mask=np.asarray(mask, bool),
                             meta={"method": "dape", "top_rate": dape_cfg.top_rate,
                                   "filter_rate": dape_cfg.filter_rate, "bar_ratio": dape_cfg.bar_ratio,
                                   "n_tokens": np.asarray(n_tokens).tolist()})
  return sets


def run(config, workdir: str) -> str:
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=1))
  records, bad = sources.load_records(config, workdir)
  model, inputs, model_id = sources.load_model(config, workdir, records)
  params = model.params
  domains = list(config.data.domains)
  by_domain = {d: [r for r in records if r.domain == d] for d in domains}
  logging.info("records per domain: %s (bad: %d)", {d: len(v) for d, v in by_domain.items()}, len(bad))

  # 1. statistics (resumable)
  stats_recs = {d: v[:config.stats.max_samples_per_domain or None] for d, v in by_domain.items()}
  sizes = {d: [sources.image_size(r) for r in v] for d, v in stats_recs.items()}
  batches, stats_plan = domain_stats.plan(stats_recs, sizes, model.config, config.stats.batch_size,
                                          config.stats.max_samples_per_domain or None,
                                          config.stats.vision_tokens_per_domain or None)
  image_only = config.stats.positions == "image"
  step_fn = domain_stats.make_step_fn(model, params, inputs, stats_recs, sources.stats_prompt, sources.load_image,
                                      len(domains), config.stats.batch_size, image_only)
  fp = domain_stats.fingerprint(model_id, domains, [dataclass_key(b) for b in batches], config.stats.positions)
  store = StatsStore.open_or_create(os.path.join(workdir, "stats"), store_spec(model.probe_modules, len(domains)), fp)
  totals = accumulate(store, ((i + 1, b) for i, b in enumerate(batches)), step_fn,
                      commit_every=config.stats.commit_every, total=len(batches), desc="domain statistics (batches)")
  if "select" not in config.stages:
    return os.path.join(workdir, "stats")

  # 2. DAPE neuron sets
  sets = select_sets(totals, model, model_id, domains, config.dape)
  set_dir = os.path.join(workdir, "neurons")
  os.makedirs(set_dir, exist_ok=True)
  for module, s in sets.items():
    s.save(os.path.join(set_dir, f"{module}.json"))
    try:
      s.export_torch(os.path.join(set_dir, f"{module}.pt"))
    except ImportError:
      logging.warning("torch not installed: skipped the PyTorch export of %s", module)
  summaries = {m: dape.summary(s.mask, domains) for m, s in sets.items()}

  # 3. deactivation
  eval_recs = {d: v[:config.eval.n_per_domain] for d, v in by_domain.items()}
  random_sets = {m: s.random_like(config.seed) for m, s in sets.items()}
  rows, predictions = deactivation.evaluate(
      model, params, inputs, eval_recs, sets, random_sets,
      lambda r: sources.eval_prompt(r, config.eval.template), sources.load_image, sources.score,
      batch_size=config.eval.batch_size, max_new_tokens=config.eval.max_new_tokens,
      temperature=config.eval.temperature, seed=config.seed)
  with open(os.path.join(workdir, "deactivation.json"), "w") as f:
    json.dump({"rows": rows, "predictions": {"|".join(k): v for k, v in predictions.items()}}, f, indent=1)

  # 4. logit lens
  lens_results = {d: lens.domain_lens(model, params, inputs, v[:config.lens.n_per_domain], sources.stats_prompt,
                                      sources.load_image, config.eval.batch_size, config.lens.top_k)
                  for d, v in by_domain.items()}
  with open(os.path.join(workdir, "logit_lens.json"), "w") as f:
    json.dump({d: {k: np.asarray(v).tolist() for k, v in r.items()} for d, r in lens_results.items()}, f, indent=1)

  return report.write(workdir, config=config, model_id=model_id, domains=domains, bad=bad, stats_plan=stats_plan,
                      totals=totals, sets=sets, summaries=summaries, rows=rows, lens_results=lens_results)


def dataclass_key(b):
  return [b.domain, list(b.indices)]
