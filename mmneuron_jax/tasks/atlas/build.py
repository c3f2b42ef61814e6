"""The atlas of one run: collect (resumable, `collect.py`) -> examples in context (`examples.py`)
-> logit lens and switch-off effects (`readouts.py`) -> static site (`site.py`).

`make_atlas` takes a loaded model and the records; `build(run_dir)` reopens a finished MMNeuron
run (its config.json, checkpoint, records and neurons/<module>.json) and writes
<run_dir>/atlas/index.html.
"""
import dataclasses
import glob
import hashlib
import json
import os
import time

import numpy as np
from absl import logging

from mmneuron_jax.analysis.neuron_sets import NeuronSet
from mmneuron_jax.data.inputs.batching import chunks
from mmneuron_jax.io.stats_store import StatsStore
from mmneuron_jax.tasks import mmneuron
from mmneuron_jax.tasks.atlas import collect, examples, readouts, site
from mmneuron_jax.tasks.common import sources
from mmneuron_jax.tasks.mmneuron import domain_stats

DEFAULTS = dict(k=8, max_samples_per_domain=0, batch_size=0, max_neurons=0, effect_n_per_domain=4, commit_every=10,
                prefetch=2, lens_top=8)


@dataclasses.dataclass(frozen=True)
class Options:
  """k: top examples per neuron and group; max_neurons: per module, 0 = the whole set; batch_size;
  effect_n_per_domain: held-out records per group for the switch-off effect (0 = skip);
  image_only: count only image tokens in the LLM (as `stats.positions == 'image'`)."""
  k: int = 8
  batch_size: int = 4
  max_neurons: int = 0
  effect_n_per_domain: int = 4
  commit_every: int = 10
  prefetch: int = 2
  lens_top: int = 8
  image_only: bool = False


def options_from_config(config, stats_batch_size: int, image_only: bool) -> Options:
  a = dict(DEFAULTS, **(config.get("atlas", None) or {}))
  return Options(k=int(a["k"]), batch_size=int(a["batch_size"] or stats_batch_size), max_neurons=int(a["max_neurons"]),
                 effect_n_per_domain=int(a["effect_n_per_domain"]), commit_every=int(a["commit_every"]),
                 prefetch=int(a["prefetch"]), lens_top=int(a["lens_top"]), image_only=image_only)


def _fingerprint(*parts) -> str:
  return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _round(x, digits=5):
  return None if x is None or not np.isfinite(x) else round(float(x), digits) + 0.0  # no -0


def make_atlas(model, params, inputs, workdir: str, sets: dict, group_names: list, records_by_group: dict, prompt_fn,
               load_image, opts: Options, model_id: str, heldout_by_group: dict | None = None, answer_prompt_fn=None,
               source: str = "neuron sets") -> str:
  """sets {module: NeuronSet} (groups = group_names); records_by_group {group: [records]} scanned
  for top examples (a sample's tokens count for its record's group); heldout_by_group {group:
  [records]} for the switch-off effect (None: skipped). Writes <workdir>/atlas_stats (resumable)
  and <workdir>/atlas/; returns atlas/index.html."""
  samples = [(r, g) for g, name in enumerate(group_names) for r in records_by_group.get(name, [])]
  plan, start = [], 0
  for name in group_names:
    n = len(records_by_group.get(name, []))
    plan += [tuple(c) for c in chunks(list(range(start, start + n)), opts.batch_size)]
    start += n
  batcher = collect.RecordBatcher(model, inputs, samples, prompt_fn, load_image, opts.batch_size, opts.image_only)
  effect_fn = None
  if heldout_by_group and opts.effect_n_per_domain:
    held = [heldout_by_group.get(name, [])[:opts.effect_n_per_domain] for name in group_names]
    effect_fn = lambda modules: readouts.effects(model, params, inputs, held, answer_prompt_fn or prompt_fn,
                                                 load_image, modules, opts.batch_size)
  return atlas_from_batches(model, params, inputs, workdir, sets, group_names, batcher, plan,
                            [(str(r.id), g) for r, g in samples], opts, model_id, effect_fn, source)


def atlas_from_batches(model, params, inputs, workdir, sets, group_names, batcher, plan, sample_keys, opts: Options,
                       model_id, effect_fn=None, source="neuron sets") -> str:
  """The atlas over any `batcher` (sample ids -> prepared batch, token groups, row sample ids;
  `collect.RecordBatcher`, `miner_batcher`) and `plan` (batches of sample ids, in order);
  sample_keys identify the samples in the store's fingerprint; effect_fn(modules) -> {module:
  float[G, L, F]} or None."""
  G = len(group_names)
  targets = {m: collect.targets_from_set(s, opts.max_neurons) for m, s in sets.items() if s.mask.any()}
  if not targets:
    raise ValueError("atlas: every neuron set is empty; nothing to show")
  batches = [(i + 1, tuple(b)) for i, b in enumerate(plan)]
  fp = _fingerprint(model_id, group_names, sample_keys, [list(b) for b in plan],
                    {m: (t.layer.tolist(), t.index.tolist()) for m, t in targets.items()}, opts.k, collect.EDGES,
                    opts.image_only, collect.VERSION)
  store = StatsStore.open_or_create(os.path.join(workdir, "atlas_stats"),
                                    collect.store_spec(targets, G, opts.k), fp)
  step = collect.make_step(model, params, batcher, targets, G, opts.k)
  t0 = time.time()
  totals = collect.collect(store, batches, step, opts.commit_every, opts.prefetch)
  t1 = time.time()
  atlas_dir = os.path.join(workdir, "atlas")
  ex = examples.examples(model, params, inputs, batcher, targets, totals, os.path.join(atlas_dir, "img"))
  t2 = time.time()
  lens = {}
  if "llm" in targets:
    got = readouts.logit_lens(params, targets["llm"].layer, targets["llm"].index, opts.lens_top)
    if got is not None:
      words = inputs.tokenizer.convert_ids_to_tokens(got[0].ravel().tolist())
      lens["llm"] = (np.asarray(words, object).reshape(got[0].shape), got[1])
  effect = effect_fn(tuple(targets)) if effect_fn is not None else None
  t3 = time.time()
  pages = _pages(targets, totals, ex, lens, effect, group_names, model_id)
  index = _index(targets, pages, group_names, model_id, source)
  path = site.write(atlas_dir, index, pages)
  logging.info("atlas: %d neuron pages in %s (collect %.1fs, examples %.1fs, readouts %.1fs, site %.1fs)", len(pages),
               atlas_dir, t1 - t0, t2 - t1, t3 - t2, time.time() - t3)
  return path


def _pages(targets, totals, ex, lens, effect, group_names, model_id) -> list:
  pages = []
  for m, t in targets.items():
    for n in range(t.size):
      l, j = int(t.layer[n]), int(t.index[n])
      top = totals[f"value/{m}"][n, :, 0]
      data = {"id": site.neuron_id(m, l, j), "model_id": model_id, "module": m, "layer": l, "index": j,
              "group_names": list(group_names), "member": [group_names[g] for g in np.flatnonzero(t.member[n])],
              "max": [_round(v) if np.isfinite(v) else 0.0 for v in top],
              "hist": {"edges": list(collect.EDGES),
                       "counts": site.histogram(totals[f"above/{m}"][n], totals[f"tokens/{m}"]).tolist()},
              "top": {str(g): v for g, v in ex.get(m, {}).get(n, {}).items()}}
      if m in lens:
        data["lens"] = [[str(w), _round(v, 4)] for w, v in zip(lens[m][0][n], lens[m][1][n])]
      if effect is not None and m in effect:
        data["effect"] = [_round(effect[m][g, l, j], 6) for g in range(len(group_names))]
      pages.append(data)
  ids = [p["id"] for p in pages]
  for i, p in enumerate(pages):
    p["prev"] = ids[i - 1] if i else None
    p["next"] = ids[i + 1] if i + 1 < len(ids) else None
  return pages


def _index(targets, pages, group_names, model_id, source) -> dict:
  counts = {}
  for m, t in targets.items():
    per = counts.setdefault(m, {})
    for n in range(t.size):
      row = per.setdefault(str(int(t.layer[n])), [0] * len(group_names))
      for g in np.flatnonzero(t.member[n]):
        row[g] += 1
  neurons = []
  for p in pages:
    member = [group_names.index(g) for g in p["member"]]
    eff = p.get("effect")
    own = [eff[g] for g in member if eff is not None and eff[g] is not None]
    neurons.append({"id": p["id"], "module": p["module"], "layer": p["layer"], "index": p["index"], "member": member,
                    "max": p["max"], "effect": _round(np.mean(own), 6) if own else None})
  return {"model_id": model_id, "group_names": list(group_names), "source": source, "total": len(pages),
          "edges": list(collect.EDGES), "counts": counts, "neurons": neurons}


# ------------------------------------------------------------------ a finished MMNeuron run

def load_sets(run_dir: str) -> dict:
  """{module: NeuronSet} from <run_dir>/neurons/*.json."""
  files = sorted(glob.glob(os.path.join(run_dir, "neurons", "*.json")))
  if not files:
    raise FileNotFoundError(f"{run_dir}/neurons: no neuron-set files (*.json); run the 'select' stage first")
  sets = {}
  for f in files:
    s = NeuronSet.load(f)
    sets[s.module] = s
  return sets


def stage(study, sets: dict) -> str:
  """The optional 'atlas' stage of the MMNeuron study (tasks/mmneuron/): top examples over the
  records the statistics counted (their split, the same stopping rule; `atlas.max_samples_per_domain`
  > 0 caps them); switch-off effects on the evaluation split's records that the scan did not use,
  answers teacher-forced after the study's evaluation prompt. Marks both in records_used.json."""
  c = study.config
  cap = c.stats.max_samples_per_domain or None
  recs = {d: v[:cap] for d, v in study.records("stats").items()}
  sizes = {d: (sources.image_size(r) for r in v) for d, v in recs.items()}  # lazily, as the statistics plan
  _, summary = domain_stats.plan(recs, sizes, study.inputs.num_vision_tokens, c.stats.batch_size, cap,
                                 c.stats.vision_tokens_per_domain or None)
  limit = (c.get("atlas", {}) or {}).get("max_samples_per_domain", 0)
  scan = {d: v[:min(summary[d]["samples"], limit) if limit else summary[d]["samples"]] for d, v in recs.items()}
  seen = {r.id for v in scan.values() for r in v}
  opts = options_from_config(c, c.stats.batch_size, c.stats.positions == "image")
  held = {d: [r for r in v if r.id not in seen][:opts.effect_n_per_domain] for d, v in study.records("eval").items()}
  study.mark_used("atlas", scan)
  if opts.effect_n_per_domain:
    study.mark_used("atlas_effect", held)
  return make_atlas(study.model, study.params, study.inputs, study.workdir, sets, study.domains, scan,
                    study.family.stats_prompt, sources.load_image, opts, study.model_id, heldout_by_group=held,
                    answer_prompt_fn=study.eval_prompt, source="DAPE (neurons/*.json)")


def build(run_dir: str, config=None) -> str:
  """Reopen a finished MMNeuron run (config.json, checkpoint, records, neurons/*.json) and write
  its atlas; `config` overrides the stored one (e.g. with an `atlas` section). Returns index.html."""
  import ml_collections

  if config is None:
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
      raise FileNotFoundError(f"{path}: not a finished run directory (no config.json)")
    with open(path) as f:
      config = ml_collections.ConfigDict(json.load(f))
  if config.get("task") != "mmneuron":
    raise ValueError(f"{run_dir}/config.json: task={config.get('task')!r}; `atlas.build` reads MMNeuron runs "
                     "(MINER runs: add 'atlas' to the study's stages)")
  sets = load_sets(run_dir)
  used_file = os.path.join(run_dir, "records_used.json")
  used = {}
  if os.path.exists(used_file):
    with open(used_file) as f:
      used = json.load(f)
  study = mmneuron.open_study(config, run_dir)  # (starts a new records_used.json: keep the run's)
  study.used.update({k: v for k, v in used.items() if not k.startswith("atlas")})
  return stage(study, sets)
