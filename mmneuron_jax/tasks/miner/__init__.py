"""The MINER study end to end in one run directory (docs/ALGORITHMS.md, "MINER"):

1-2. per dataset, batched prefill forwards with the in-scan MinerScores probe -> per-sample scores
     (and optionally the gradient score), summed into a resumable StatsStore (`tasks/miner/scores.py`);
3.   dataset means, cross-dataset means per modality, weighted combination;
4.   selection (K = int(ratio * L * F)) with every strategy; the chosen one saved as a NeuronSet
     (one group per modality) + its PyTorch export, and the per-layer overlap tables;
5.   deactivation of the selected neurons while generating, vs none and a random control
     (`tasks/miner/deactivation.py`);
6.   report.md + plots, miner_results.json, scores.npz (`load_results` reads them back);
7.   optional stages `sweep`, `last_token`, `semantics` (`tasks/miner/studies.py`), each a report section.

The model family is one config field (`model.family`); its inputs builder (`tasks/miner/inputs.py`)
supplies the chat template, batches and token ids, so the same config runs on every family.
"""
import io
import os
import shutil

import numpy as np
from absl import logging

from mmneuron_jax import loading
from mmneuron_jax.analysis import finite, miner
from mmneuron_jax.analysis.compare import pairwise_jaccard
from mmneuron_jax.analysis.neuron_sets import NeuronSet
from mmneuron_jax.data.synthetic import demo_stamp, miner_demo
from mmneuron_jax.io import paths, run_dir
from mmneuron_jax.models import registry
from mmneuron_jax.tasks.miner import data as miner_data, deactivation as miner_deactivation, inputs as miner_inputs
from mmneuron_jax.tasks.miner import protocol as miner_protocol
from mmneuron_jax.tasks.atlas import miner_stage as atlas_miner_stage
from mmneuron_jax.tasks.train_demo import cache as train_demo_cache, miner_training, recipes
from mmneuron_jax.tasks.common import tables
from mmneuron_jax.tasks.miner import report as miner_report, scores as miner_scores, studies as miner_studies


def load_model(config, workdir, samples_by_dataset):
  """-> (Model, ChatInputs, model id, checkpoint path, dtype). No model.path: the family's tiny demo
  checkpoint in <workdir>/demo_checkpoint (for a URL workdir a local directory, io/paths.local_scratch:
  the loader memory-maps it): with `model.demo_weights='trained'` the trained demo
  (tasks/train_demo: bundled, or trained on first use), else built deterministically with random
  weights for the vocabulary of the samples. model.dtype 'auto' is the checkpoint's torch_dtype."""
  family = config.model.family
  path = config.model.path
  model_id = config.model.id or path
  if not path and config.model.get("demo_weights", "random") == "trained":
    path = paths.local_scratch(workdir, "demo_checkpoint")
    result = train_demo_cache.ensure(path, recipes.recipe(family), miner_training.train)
    logging.info("trained demo %s (%s): recipe %s, held-out mean primary %.3f", family, result["source"],
                 result["digest"], result.get("heldout_mean", float("nan")))
    # The id names the weights: a rerun in this workdir with other weights must not reuse its statistics.
    model_id = f"{config.model.id or path} (trained, recipe {result['digest']})"
  elif not path:
    path = paths.local_scratch(workdir, "demo_checkpoint")
    if os.path.exists(os.path.join(path, "train_demo.json")):  # a trained demo from an earlier run: not this one
      shutil.rmtree(path)
    texts = miner_demo.texts([s for v in samples_by_dataset.values() for s in v])
    demo_stamp.ensure(path, miner_inputs.demo_builder(family), family, texts, config.model.seed)
  dtype = miner_protocol.resolve_dtype(config.model.dtype, path)
  if dtype != config.model.dtype:
    config = config.copy_and_resolve_references()
    config.model.dtype = dtype
  # On the config's mesh (sharding.mesh_from_spec): each device reads only its slices.
  model = loading.load_for_config(path, config)
  if config.model.get("check_weights", True):
    finite.check_params(model.params, path)
  if model.family != family:
    raise ValueError(f"config.model.family={family!r} but the checkpoint at {path} is a {model.family!r} model")
  inputs = miner_inputs.family_inputs(family, path, miner_protocol.processor_options(config))
  return model, inputs, model_id or path, path, dtype


def check_token_ids(ids: dict, family: str, model_id: str) -> None:
  """Log where the checkpoint's stage-1 ids differ from the real model's (the family module's
  `TOKEN_IDS`; demo checkpoints remap them)."""
  want = {k[:-len("_ids")]: v for k, v in registry.family(family).TOKEN_IDS.items()}
  diff = {k: (ids[k], tuple(want[k])) for k in want if tuple(want[k]) and ids[k] and set(ids[k]) != set(want[k])}
  if diff:
    logging.info("%s: stage-1 token ids differ from the real %s ids (a remapped checkpoint?): %s", model_id,
                 family, diff)


def select_all(combined, names, config, model_id, width) -> tuple:
  """-> ({strategy: NeuronSet}, summary {strategy: {'sizes', 'union', 'target', 'per_layer'}})."""
  sel = config.select
  M, L, F = combined.shape
  K = miner.budget(sel.ratio, L, F)
  targets = {"LA_MU": f"{K // M} per modality", "LU_MA": f"{K // L} per layer (all modalities)",
             "adaptive": f"{K} in total, disjoint", "uniform": f"{K // (M * L)} per (layer, modality)",
             "random": f"{K} draws with replacement, shared"}
  sets, summary = {}, {}
  for strategy in miner.STRATEGIES:
    mask = miner.select(combined, sel.ratio, strategy, seed=sel.seed)
    sets[strategy] = NeuronSet(model_id=model_id, module="llm", group_names=list(names), layers=L, width=width,
                               mask=mask, meta={"method": "miner", "strategy": strategy, "ratio": sel.ratio,
                                                "K": K, "split": sel.split, "seed": sel.seed,
                                                "weights": miner_scores.parse_weights(sel.weights).tolist(),
                                                "grad_weight": float(sel.grad_weight)})
    summary[strategy] = {"sizes": sets[strategy].sizes(), "union": int(mask.any(0).sum()), "target": targets[strategy],
                         "per_layer": {n: mask[i].sum(-1).tolist() for i, n in enumerate(names)}}
  return sets, summary


def save_sets(workdir, sets, strategy) -> None:
  out = paths.join(workdir, "neurons")
  paths.makedirs(paths.join(out, "strategies"))
  sets[strategy].save(paths.join(out, "llm.json"))
  try:
    sets[strategy].export_torch(paths.join(out, "llm.pt"))
  except ImportError:
    logging.warning("torch not installed: skipped the PyTorch export of the MINER sets")
  for s, ns in sets.items():
    ns.save(paths.join(out, "strategies", f"llm_{s}.json"))


def run(config, workdir: str) -> str:
  miner_studies.check_stages(config.stages)
  spec = miner_inputs.spec_for(config.model.family)
  samples, bad, originals = miner_data.load(config, spec.takes)
  logging.info("MINER samples per dataset: %s (skipped: %s)", {d: len(v) for d, v in samples.items()},
               {d: len(v) for d, v in bad.items()})
  model, inputs, model_id, path, dtype = load_model(config, workdir, samples)
  sampling, sampling_source = miner_protocol.generation(config, path)
  params = model.params
  ids = inputs.token_ids()
  check_token_ids(ids, config.model.family, model_id)
  stored = miner_scores.stored_modalities(config.select.split, spec.modalities)
  layers, width = model.probe_modules["llm"]

  # stages 1-2 (+ stage-3 sums), resumable per dataset
  model_config = config.model.copy_and_resolve_references()
  model_config.dtype = dtype
  stores = {name: miner_scores.open_store(workdir, model, inputs, name, s, stored, ids, config.scores, path,
                                          model_config, bool(config.get("overwrite", False)))
            for name, s in samples.items()}
  run_dir.accept(config, workdir)
  totals = {name: miner_scores.run_dataset(stores[name], model, params, inputs, name, s, stored, ids, config.scores)
            for name, s in samples.items()}
  if "select" not in config.stages:
    return paths.join(workdir, "stats")

  # stage 3 (the authors' default aggregate leaves the video dataset out: select.video=False)
  agg_sets, left_out = miner_protocol.aggregation_datasets(totals, stored, bool(config.select.get("video", True)))
  means = miner_scores.dataset_means({d: totals[d] for d in agg_sets})
  agg = miner.aggregate({d: m["scores"] for d, m in means.items()}, {d: m["present"] for d, m in means.items()})
  agg_grad = miner_scores.cross_dataset_mean(means, "grad") if config.scores.grad else None
  used = np.any([m["present"] for m in means.values()], axis=0)
  names = [m for m, u in zip(stored, used) if u]
  if not names:
    raise ValueError("no modality occurs in any dataset")
  combined = miner_scores.combined_scores(agg, agg_grad, config.select.weights, config.select.grad_weight)[used]
  layer_min = miner_scores.layer_minimum(totals)

  # stage 4
  sets, strategy_summary = select_all(combined, names, config, model_id, width)
  strategy = config.select.strategy
  if strategy not in sets:
    raise ValueError(f"config.select.strategy={strategy!r}; expected one of {list(miner.STRATEGIES)}")
  save_sets(workdir, sets, strategy)
  selected = sets[strategy].mask
  overlap = miner.overlap_table(selected)
  combos, combo_counts = miner.combination_overlap(selected, names)
  n_eval = int(config.deactivate.n_per_dataset) or None
  protocol = {
      "samples": {d: {"scored": int(t["samples"][0]), "evaluated": len(samples[d][:n_eval])} for d, t in totals.items()},
      "full_sets": not int(config.data.n_per_dataset) and not int(config.deactivate.n_per_dataset),
      "dtype": dtype, "dtype_config": config.model.dtype, "generation": sampling.as_dict(),
      "generation_source": sampling_source, "max_new_tokens": int(config.deactivate.max_new_tokens),
      "modalities": names, "aggregate_datasets": agg_sets, "left_out": left_out, "processor": inputs.settings(),
      "metric": "the authors' lenient metric" if config.data.source == "benchmarks" else "demo metric",
      "source": config.data.source}
  results = {
      "protocol": protocol,
      "model_id": model_id, "family": config.model.family, "split": config.select.split,
      "stored_modalities": list(stored), "modalities": names, "layers": layers, "width": width,
      "K": miner.budget(config.select.ratio, layers, width), "ratio": config.select.ratio, "strategy": strategy,
      "weights": miner_scores.parse_weights(config.select.weights).tolist(),
      "grad_weight": float(config.select.grad_weight), "token_ids": {k: list(v) for k, v in ids.items()},
      "datasets": {d: {"samples": int(t["samples"][0]), "bad": [list(b) for b in bad[d]],
                       "present": dict(zip(stored, t["present"].tolist())),
                       "tokens": dict(zip(stored, t["tokens"].tolist()))} for d, t in totals.items()},
      "strategies": strategy_summary, "layer_min": layer_min.tolist(),
      "overlap": {"per_layer": overlap.tolist(), "jaccard": pairwise_jaccard(np.asarray(selected, bool)).tolist(),
                  "combinations": dict(zip(combos, combo_counts.tolist()))},
  }
  buf = io.BytesIO()
  np.savez_compressed(
      buf, aggregated=agg.astype(np.float32), combined=combined,
      modalities=np.asarray(names), stored_modalities=np.asarray(stored), layer_min=layer_min,
      datasets=np.asarray(list(means)), dataset_means=np.stack([m["scores"] for m in means.values()]).astype(np.float32),
      present=np.stack([m["present"] for m in means.values()]),
      **({"aggregated_grad": agg_grad.astype(np.float32)} if agg_grad is not None else {}))
  paths.write_bytes(paths.join(workdir, "scores.npz"), buf.getvalue())

  # deactivation
  if "deactivate" in config.stages:
    rows, predictions = miner_deactivation.evaluate(model, params, inputs, samples, originals, selected, names,
                                                    layer_min, config.deactivate, config.data.source, config.seed,
                                                    sampling=sampling)
    results["deactivation"] = rows
    results["headline"] = miner_protocol.headline(rows)
    results["modality_effects"] = miner_protocol.modality_effects(
        rows, {d: v["present"] for d, v in results["datasets"].items()}, names)
    paths.write_json(paths.join(workdir, "deactivation.json"), {"rows": rows, "predictions": predictions}, indent=1)
    tables.write_tables(paths.join(workdir, "deactivation.json"), {"": rows})
  paths.write_json(paths.join(workdir, "miner_results.json"), results, indent=1)
  tables.write_tables(paths.join(workdir, "miner_results.json"), miner_report.tables(results))
  if "atlas" in config.stages:  # optional: per-neuron top examples as a static site (tasks/atlas/)
    atlas_miner_stage.stage(config, workdir, model, params, inputs, samples, sets[strategy], ids, model_id)
  report = miner_report.write(workdir, config=config, results=results, agg_scores=agg[:, used], combined=combined,
                              agg_grad=None if agg_grad is None else agg_grad[used], selected=selected,
                              sets_by_strategy=sets)
  # optional stages: sweep, last_token, semantics (tasks/miner/studies.py)
  extra = miner_studies.run(workdir, config, model=model, params=params, inputs=inputs, samples=samples,
                            originals=originals, totals={d: totals[d] for d in agg_sets}, stored=stored, ids=ids,
                            names=names, selected=selected, sets=sets, layer_min=layer_min, results=results,
                            sampling=sampling)
  return miner_studies.append_report(report, extra)


def load_results(workdir: str) -> dict:
  """A finished run's results: {'results': miner_results.json, 'sets': {strategy: NeuronSet} ('chosen'
  too), 'scores': {name: array} from scores.npz}."""
  results = paths.read_json(paths.join(workdir, "miner_results.json"))
  folder = paths.join(workdir, "neurons", "strategies")
  sets = {s: NeuronSet.load(paths.join(folder, f"llm_{s}.json")) for s in miner.STRATEGIES
          if paths.exists(paths.join(folder, f"llm_{s}.json"))}
  sets["chosen"] = NeuronSet.load(paths.join(workdir, "neurons", "llm.json"))
  with paths.open(paths.join(workdir, "scores.npz"), "rb") as f, np.load(io.BytesIO(f.read())) as z:
    scores = {k: z[k] for k in z.files}
  return {"results": results, "sets": sets, "scores": scores}
