"""Stage 'masks' of the readouts task: learned hard-concrete removal masks per domain on teacher-forced
answers, saved as NeuronSets in <workdir>/neurons_learned, compared with the DAPE sets of
`config.compare_sets_dir` (overlap, Jaccard) and with the planted circuit when there is one, and
their effect on held-out answers (NLL, top-1, optionally generated accuracy) vs none, random and DAPE.
"""

import numpy as np

from mmneuron_jax.analysis import learned_masks
from mmneuron_jax.analysis.learned_masks import group_losses
from mmneuron_jax.analysis.neuron_sets import NeuronSet
from mmneuron_jax.data.inputs.batching import chunks
from mmneuron_jax.data.sources.records import load_image
from mmneuron_jax.data.synthetic import planted_llm
from mmneuron_jax.io import paths
from mmneuron_jax.tasks.common import deactivation, sources
from mmneuron_jax.tasks.readouts.data import take, teacher_forced


def load_dape_sets(compare_dir: str, modules) -> dict:
  """{module: NeuronSet} from an MMNeuron run dir (`neurons/<module>.json`) or a directory of
  `<module>.json` files; modules without a file are left out."""
  if not paths.isdir(compare_dir):
    raise FileNotFoundError(f"config.compare_sets_dir={compare_dir!r} is not a directory")
  out = {}
  for m in modules:
    for cand in (paths.join(compare_dir, "neurons", f"{m}.json"), paths.join(compare_dir, f"{m}.json")):
      if paths.exists(cand):
        out[m] = NeuronSet.load(cand)
        break
  if not out:
    raise FileNotFoundError(f"config.compare_sets_dir={compare_dir!r}: no neurons/<module>.json for {list(modules)}")
  return out


def compare_sets(learned: dict, other: dict, domains) -> list:
  """Rows {'module', 'domain', 'learned', 'dape', 'overlap', 'jaccard', 'in_any_dape'} per module and domain."""
  rows = []
  for m, s in learned.items():
    if m not in other:
      continue
    o = other[m]
    if (o.layers, o.width) != (s.layers, s.width):
      raise ValueError(f"compare_sets_dir: {m} set is {o.layers}x{o.width}, the model's {s.layers}x{s.width}")
    any_dape = o.mask.any(axis=0)
    for g, d in enumerate(domains):
      a = s.mask[g]
      b = o.mask[o.group_names.index(d)] if d in o.group_names else np.zeros_like(a)
      union = (a | b).sum()
      rows.append({"module": m, "domain": d, "learned": int(a.sum()), "dape": int(b.sum()), "overlap": int((a & b).sum()),
                   "jaccard": float((a & b).sum() / union) if union else float("nan"),
                   "in_any_dape": int((a & any_dape).sum())})
  return rows


def answer_scores(model, params, tfs, masks):
  """Teacher-forced answers under `masks` -> (nll float[N], top1 float[N]) over the real rows of `tfs`."""
  import jax.numpy as jnp
  nll, top1 = [], []
  for tf, n in tfs:
    logits = model.apply(params, tf["batch"], masks=masks).logits
    _, per_sample = group_losses(logits, jnp.asarray(tf["batch"]["input_ids"]), jnp.asarray(tf["answer_mask"]))
    at = np.asarray(logits)[np.arange(n), np.maximum(tf["last_prompt"][:n], 0)]
    nll.append(np.asarray(per_sample)[:n])
    top1.append((at.argmax(-1) == tf["answer_id"][:n]).astype(np.float64))
  return np.concatenate(nll), np.concatenate(top1)


def stage_masks(model, params, inputs, by_domain, domains, prompt_fn, config, workdir, model_id):
  cfg = config.masks
  modules = tuple(cfg.modules)
  records, groups = take(by_domain, domains, cfg.n_per_domain)
  rows = cfg.batch_size or len(records)
  batches, sample_groups = [], []
  for i in range(0, len(records), rows):
    batches.append(teacher_forced(inputs, records[i:i + rows], prompt_fn, load_image, rows=rows))
    s = np.full(rows, -1)
    s[:len(records[i:i + rows])] = groups[i:i + rows]
    sample_groups.append(s)
  masks, history = learned_masks.learn_group_sets(
      model, params, batches, sample_groups, len(domains), modules, steps=cfg.steps, lr=cfg.lr,
      keep_weight=cfg.keep_weight, l0_weight=cfg.l0_weight, init=cfg.init, seed=config.seed, remat=cfg.remat)
  set_dir = paths.join(workdir, "neurons_learned")
  paths.makedirs(set_dir)
  learned = {}
  for m in modules:
    layers, width = model.probe_modules[m]
    learned[m] = NeuronSet(model_id=model_id, module=m, group_names=domains, layers=layers, width=width, mask=masks[m],
                           meta={"method": "hard_concrete_l0", "steps": int(cfg.steps), "lr": float(cfg.lr),
                                 "l0_weight": float(cfg.l0_weight), "keep_weight": float(cfg.keep_weight),
                                 "train_samples_per_domain": int(cfg.n_per_domain)})
    learned[m].save(paths.join(set_dir, f"{m}.json"))
  planted = None
  if config.data.source == "planted" and "llm" in learned:
    s = learned["llm"]
    truth = planted_llm.planted_mask(len(domains), s.layers, s.width, config.planted.llm_layer,
                                     config.planted.per_domain, config.model.seed)
    hit = int((s.mask & truth).sum())
    planted = {"module": "llm", "layer": int(config.planted.llm_layer), "per_domain": int(config.planted.per_domain),
               "precision": hit / max(int(s.mask.sum()), 1), "recall": hit / int(truth.sum())}
  dape = load_dape_sets(config.compare_sets_dir, modules) if config.compare_sets_dir else {}
  comparison = compare_sets(learned, dape, domains) if dape else []
  # Effects on held-out records (after the training ones when there are enough).
  start = cfg.n_per_domain if all(len(v) >= cfg.n_per_domain + cfg.eval_n_per_domain for v in by_domain.values()) else 0
  eval_recs, eval_groups = take(by_domain, domains, cfg.eval_n_per_domain, start)
  tfs = [(teacher_forced(inputs, c, prompt_fn, load_image, rows=config.batch_size), len(c))
         for c in chunks(eval_recs, config.batch_size)]
  conditions = {"learned": learned, "random": {m: s.random_like(config.seed) for m, s in learned.items()}}
  if dape:
    conditions["dape"] = {m: dape[m] for m in modules if m in dape}
  ones = deactivation.condition_masks(learned, (), domains[0])  # no removal, same structure: one compile
  base_nll, base_top1 = answer_scores(model, params, tfs, ones)
  effects = {"none": {"nll": [float(base_nll[eval_groups == e].mean()) for e in range(len(domains))],
                      "top1": [float(base_top1[eval_groups == e].mean()) for e in range(len(domains))]}}
  for name, sets in conditions.items():
    nll_m, top_m = np.zeros((len(domains), len(domains))), np.zeros((len(domains), len(domains)))
    for g, d in enumerate(domains):
      masks_g = deactivation.condition_masks(sets, tuple(sets), d)
      nll, top1 = answer_scores(model, params, tfs, masks_g)
      nll_m[g] = [nll[eval_groups == e].mean() for e in range(len(domains))]
      top_m[g] = [top1[eval_groups == e].mean() for e in range(len(domains))]
    effects[name] = {"nll": nll_m.tolist(), "top1": top_m.tolist(),
                     "sizes": {d: int(sum(s.mask[s.group_names.index(d)].sum() for s in sets.values()
                                          if d in s.group_names)) for d in domains}}
  accuracy = []
  if cfg.generate:
    for name, sets in [("none", learned)] + list(conditions.items()):
      for d in domains:
        recs = [r for r in eval_recs if r.domain == d]
        masks_d = deactivation.condition_masks(sets, tuple(sets) if name != "none" else (), d)
        answers = deactivation.generate_answers(model, params, inputs, recs, prompt_fn, load_image, masks_d,
                                                config.batch_size, cfg.max_new_tokens)
        accuracy.append({"condition": name, "domain": d, "n": len(recs), **sources.score(answers, recs)})
  return {"sets": learned, "history": {k: np.asarray(v).tolist() for k, v in history.items()},
          "comparison": comparison, "effects": effects, "accuracy": accuracy, "eval_start": start, "planted": planted,
          "eval_n": len(eval_recs), "compare_sets_dir": config.compare_sets_dir}
