"""Task "readouts" (issue 7): tuned lens, layer probes and learned masks on one model + records,
with a report.md and plots in the run directory.

Stages (config.stages): 'tuned_lens' (train translators, save with orbax, reload by name, compare
with the logit lens on held-out records), 'probes' (per-layer linear probes of domain / modality),
'masks' (learned removal masks per domain, compared with the DAPE sets of `config.compare_sets_dir`).
"""
import json
import os

import numpy as np
from absl import logging

from mmneuron_jax.analysis.logit_lens import Lens
from mmneuron_jax.data.batching import chunks

# --------------------------------------------------------------------------- batches


def teacher_forced(inputs, records, prompt_fn, load_image, rows: int | None = None, length_multiple: int = 32):
  """Prompt + " " + first answer, right-padded to `rows` x round_up(T) -> dict with 'batch' (HF names),
  'answer_mask' bool[B, T] (answer token positions), 'last_prompt' int[B] (position whose next-token
  prediction is the first answer token; -1 on padding rows) and 'answer_id' int[B] (-1 likewise)."""
  tok = inputs.tokenizer
  prompts = [prompt_fn(r) for r in records]
  answers = [(r.answers[0] if r.answers else "") for r in records]
  full = [p + " " + a if a else p for p, a in zip(prompts, answers)]
  n_answer = [len(tok(f)["input_ids"]) - len(tok(p)["input_ids"]) for p, f in zip(prompts, full)]
  batch = inputs(full, [load_image(r) for r in records])
  rows = rows or len(records)
  batch = inputs.pad(batch, rows, length_multiple)
  ids, am = np.asarray(batch["input_ids"]), np.asarray(batch["attention_mask"]).astype(bool)
  lengths = am.sum(axis=1)
  answer_mask = np.zeros_like(am)
  last_prompt = np.full(rows, -1, np.int32)
  answer_id = np.full(rows, -1, np.int32)
  for i, n in enumerate(n_answer):
    if n > 0:
      answer_mask[i, lengths[i] - n:lengths[i]] = True
      last_prompt[i] = lengths[i] - n - 1
      answer_id[i] = ids[i, lengths[i] - n]
  return {"batch": batch, "answer_mask": answer_mask, "last_prompt": last_prompt, "answer_id": answer_id}


def sample_positions(attention_mask, per_sample: int, seed: int, extra=None, labels=None):
  """int32[B, P] positions per row: up to `per_sample` valid tokens drawn without replacement
  (seeded per row), stratified over `labels` int[B, T] classes when given (-1 = never), plus
  `extra` int[B] (e.g. the last prompt position) appended; padded with -1."""
  am = np.asarray(attention_mask).astype(bool)
  rows = []
  for b in range(am.shape[0]):
    rng = np.random.default_rng([seed, b])
    valid = np.flatnonzero(am[b])
    if labels is None:
      pick = rng.choice(valid, size=min(per_sample, len(valid)), replace=False) if len(valid) else valid
    else:
      classes = [c for c in np.unique(labels[b][valid]) if c >= 0]
      k = max(per_sample // max(len(classes), 1), 1)
      pick = np.concatenate([rng.choice(valid[labels[b][valid] == c], size=min(k, int((labels[b][valid] == c).sum())),
                                        replace=False) for c in classes]) if classes else valid[:0]
    pick = np.sort(pick)
    if extra is not None and extra[b] >= 0 and extra[b] not in pick:
      pick = np.append(pick, extra[b])
    rows.append(pick)
  width = max([len(r) for r in rows] + [1])
  out = np.full((am.shape[0], width), -1, np.int32)
  for b, r in enumerate(rows):
    out[b, :len(r)] = r
  return out


def residuals_at(model, params, batch, positions):
  """LLM residual stream h_l (output of layer l) at `positions` int[B, P] -> float32[L, B, P, D]."""
  out = model.apply(params, batch, lens=Lens(np.asarray(positions, np.int32), None, 1, hidden=True))
  return np.asarray(out.lens["hidden"], np.float32)


def prompt_batches(inputs, records, prompt_fn, load_image, batch_size: int, length_multiple: int = 32):
  """-> [(records chunk, batch padded to batch_size rows)] for prompts without answers."""
  out = []
  for chunk in chunks(records, batch_size):
    batch = inputs([prompt_fn(r) for r in chunk], [load_image(r) for r in chunk])
    out.append((chunk, inputs.pad(batch, batch_size, length_multiple)))
  return out


# --------------------------------------------------------------------------- probe features

POOLS = ("token", "mean")
LABELS = ("domain", "modality")


def parse_probe_spec(spec: str, probe_modules) -> tuple[str, str, str]:
  """'features:pool:label' -> (features, pool, label); features 'hidden' (LLM residual stream) or a
  probe module (its neurons); pool 'token' | 'mean' (per sample); label 'domain' | 'modality'
  (image vs text token, LLM only, token pooling only)."""
  parts = spec.split(":")
  where = f"config.probes.specs entry {spec!r}"
  if len(parts) != 3:
    raise ValueError(f"{where}: expected 'features:pool:label', e.g. 'hidden:mean:domain'")
  features, pool, label = parts
  if features != "hidden" and features not in probe_modules:
    raise ValueError(f"{where}: features must be 'hidden' or a probe module {sorted(probe_modules)}")
  if pool not in POOLS or label not in LABELS:
    raise ValueError(f"{where}: pool must be one of {POOLS} and label one of {LABELS}")
  if label == "modality" and (pool != "token" or features not in ("hidden", "llm")):
    raise ValueError(f"{where}: modality labels are per LLM token: use 'hidden:token:modality' or 'llm:token:modality'")
  return features, pool, label


def _pick_tokens(groups, per_sample, seed, strata=None):
  """groups int[n] row of each token (-1 = skip) -> sorted indices of up to per_sample tokens per
  row, split evenly over the classes of `strata` int[n] when given."""
  strata = np.zeros_like(groups) if strata is None else np.asarray(strata)
  keep = []
  for row in np.unique(groups[groups >= 0]):
    rng = np.random.default_rng([seed, int(row)])
    classes = np.unique(strata[groups == row])
    for c in classes:
      idx = np.flatnonzero((groups == row) & (strata == c))
      keep.append(rng.permutation(idx)[:max(per_sample // len(classes), 1)])
  return np.sort(np.concatenate(keep)) if keep else np.zeros(0, int)


def batch_features(model, params, batch, n_rows: int, features: str, pool: str, per_sample: int, seed: int):
  """One batch -> (x float32[L, n, F], row int[n], is_image bool[n] (LLM tokens; False elsewhere)).

  hidden: the residual stream at sampled positions ('token': stratified over image / text tokens;
  'mean': the mean over up to `per_sample` uniformly sampled valid positions);
  module neurons: 'mean' = in-scan per-row means (GroupStats over row ids), 'token' = captured
  neurons at sampled tokens (small inputs)."""
  from mmneuron_jax.nn.probes import GroupStats
  ids = np.asarray(batch["input_ids"])
  image_id = model.config.get("image_token_index", model.config.get("image_token_id"))
  is_image_tok = ids == image_id
  rows = np.where(np.arange(ids.shape[0]) < n_rows, np.arange(ids.shape[0]), -1).astype(np.int32)
  if features == "hidden":
    am = np.asarray(batch["attention_mask"]).astype(bool) & (rows >= 0)[:, None]
    strata = np.where(am, is_image_tok.astype(int), -1) if pool == "token" else None
    positions = sample_positions(am, per_sample, seed, labels=strata)
    h = residuals_at(model, params, batch, positions)  # [L, B, P, D]
    valid = positions >= 0
    img = np.take_along_axis(is_image_tok, np.maximum(positions, 0), axis=1)
    if pool == "mean":
      x = (h * valid[None, ..., None]).sum(2) / np.maximum(valid.sum(1), 1)[None, :, None]
      return x[:, :n_rows], np.arange(n_rows), np.zeros(n_rows, bool)
    r = np.repeat(np.arange(ids.shape[0])[:, None], positions.shape[1], 1)
    return h[:, valid], r[valid], img[valid]
  groups = model.token_groups(batch, rows)[features]
  if pool == "mean":
    out = model.apply(params, batch, probe={features: GroupStats(np.asarray(groups, np.int32), ids.shape[0])})
    stats = out.probe[features]
    x = np.asarray(stats["sum"]) / np.maximum(np.asarray(stats["tokens"]), 1)[..., None]
    return x[:, :n_rows], np.arange(n_rows), np.zeros(n_rows, bool)
  acts = np.asarray(model.apply(params, batch, capture=(features,)).aux[features])
  flat_groups = np.asarray(groups).reshape(-1)
  pick = _pick_tokens(flat_groups, per_sample, seed, is_image_tok.reshape(-1) if features == "llm" else None)
  x = acts.reshape(acts.shape[0], -1, acts.shape[-1])[:, pick]
  img = is_image_tok.reshape(-1)[pick] if features == "llm" else np.zeros(len(pick), bool)
  return x, flat_groups[pick], img


def probe_dataset(model, params, batches, domains, spec: str, per_sample: int, seed: int = 0) -> dict:
  """batches: [(records, padded batch)] -> {'x': float32[L, N, F], 'y': int[N], 'sample': int[N],
  'classes': [names]} for one probe spec (see `parse_probe_spec`)."""
  features, pool, label = parse_probe_spec(spec, model.probe_modules)
  xs, ys, samples = [], [], []
  offset = 0
  for b, (recs, batch) in enumerate(batches):
    x, rows, img = batch_features(model, params, batch, len(recs), features, pool, per_sample, seed + b)
    xs.append(x)
    samples.append(offset + rows)
    ys.append(img.astype(np.int64) if label == "modality" else
              np.array([domains.index(recs[r].domain) for r in rows], np.int64))
    offset += len(recs)
  classes = ["text", "image"] if label == "modality" else list(domains)
  return {"x": np.concatenate(xs, axis=1), "y": np.concatenate(ys), "sample": np.concatenate(samples),
          "classes": classes}


# --------------------------------------------------------------------------- model + records


def load_setup(config, workdir):
  """-> (model, inputs, model_id, records by domain, domains, bad records). `data.source`:
  'planted' (the hue -> answer circuit of `data/planted_llm.py`, built in the workdir) or any
  MMNeuron source ('demo', 'records', 'paper')."""
  from mmneuron_jax import sharding
  from mmneuron_jax.data import planted_llm
  from mmneuron_jax.tasks import families, sources
  if config.data.source == "planted":
    domains = list(config.planted.hues)
    records = planted_llm.hue_records(domains, config.data.n_per_domain or 8, config.data.seed)
    path = config.model.path or os.path.join(workdir, "planted_checkpoint")
    if not os.path.exists(os.path.join(path, "config.json")):
      planted_llm.build(path, domains, seed=config.model.seed, llm_layer=config.planted.llm_layer,
                        per_domain=config.planted.per_domain, vision_layer=config.planted.vision_layer)
    model = sharding.load_for_config(path, config)  # as sources.load_model does for the other sources
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


def take(by_domain, domains, n, start=0):
  """The records [start, start + n) of every domain, domain-major, with their domain index."""
  recs = [r for d in domains for r in by_domain[d][start:start + n]]
  return recs, np.array([domains.index(r.domain) for r in recs])


# --------------------------------------------------------------------------- stage: tuned lens


def lens_points(model, params, inputs, records, prompt_fn, batch_size, per_sample, seed):
  """Residuals at sampled positions (+ the last prompt position) of teacher-forced records ->
  {'hidden': float32[L, N, D], 'sample': int[N], 'kind': str[N] ('image'|'text'|'answer'),
  'answer': int[N] (answer token at 'answer' points, else -1)} and the first batch's
  (batch, positions, point slice) for the in-scan check."""
  from mmneuron_jax.data.records import load_image
  from mmneuron_jax.io.progress import Progress
  image_id = model.config.get("image_token_index", model.config.get("image_token_id"))
  hs, samples, kinds, answers, first = [], [], [], [], None
  bar = Progress(len(records), "tuned lens: residuals (samples)")
  for i, chunk in enumerate(chunks(records, batch_size)):
    tf = teacher_forced(inputs, chunk, prompt_fn, load_image, rows=batch_size)
    am = np.asarray(tf["batch"]["attention_mask"]).astype(bool)
    am[len(chunk):] = False
    prompt_only = am & (np.arange(am.shape[1])[None] <= tf["last_prompt"][:, None])
    positions = sample_positions(prompt_only, per_sample, seed + i, extra=tf["last_prompt"])
    h = residuals_at(model, params, tf["batch"], positions)
    valid = positions >= 0
    rows = np.repeat(np.arange(batch_size)[:, None], positions.shape[1], 1)
    ids = np.take_along_axis(np.asarray(tf["batch"]["input_ids"]), np.maximum(positions, 0), axis=1)
    is_answer = positions == tf["last_prompt"][:, None]
    kind = np.where(is_answer, "answer", np.where(ids == image_id, "image", "text"))
    if first is None:
      first = (tf["batch"], positions, sum(len(s) for s in samples), int(valid.sum()))
    hs.append(h[:, valid])
    samples.append(i * batch_size + rows[valid])
    kinds.append(kind[valid])
    answers.append(np.where(is_answer, tf["answer_id"][:, None], -1)[valid])
    bar.update(len(chunk))
  bar.close()
  return {"hidden": np.concatenate(hs, 1), "sample": np.concatenate(samples), "kind": np.concatenate(kinds),
          "answer": np.concatenate(answers)}, first


def summarise_lens(metrics: dict, kind, top_k: int) -> dict:
  """Per-layer means over point kinds -> {'image'|'text': {'entropy', 'kl', 'top1_agree'}: float[L],
  'answer': {'top1', f'top{k}', 'mean_rank', 'median_rank', 'kl', 'entropy'}: float[L]}."""
  out = {}
  for k in ("image", "text"):
    sel = kind == k
    out[k] = {m: (metrics[m][:, sel].mean(axis=1) if sel.any() else np.full(metrics[m].shape[0], np.nan))
              for m in ("entropy", "kl", "top1_agree")}
  sel = kind == "answer"
  rank = metrics["answer_rank"][:, sel].astype(np.float64)
  nan = np.full(rank.shape[0], np.nan)
  out["answer"] = {"top1": (rank == 0).mean(1) if sel.any() else nan,
                   f"top{top_k}": (rank < top_k).mean(1) if sel.any() else nan,
                   "mean_rank": rank.mean(1) if sel.any() else nan,
                   "median_rank": np.median(rank, 1) if sel.any() else nan,
                   "kl": metrics["kl"][:, sel].mean(1) if sel.any() else nan,
                   "entropy": metrics["entropy"][:, sel].mean(1) if sel.any() else nan}
  return out


def stage_tuned_lens(model, params, inputs, by_domain, domains, prompt_fn, cfg, workdir, model_id, *,
                     batch_size: int, heldout_frac: float, seed: int) -> dict:
  """Train (or load, `cfg.load`) translators on the training samples, save them under
  `<workdir>/tuned_lens/<cfg.name>`, reload by name, and compare tuned vs logit lens on held-out samples.
  cfg: n_per_domain, positions_per_sample, steps, lr, batch_size (positions per step), top_k, name, load."""
  from mmneuron_jax.analysis import layer_probes, tuned_lens
  records, sample_domain = take(by_domain, domains, cfg.n_per_domain)
  held_samples = layer_probes.heldout_samples(sample_domain, heldout_frac, seed)
  pts, first = lens_points(model, params, inputs, records, prompt_fn, batch_size, cfg.positions_per_sample, seed)
  held = held_samples[pts["sample"]]
  readout = tuned_lens.readout_of(model, params)
  root = os.path.join(workdir, "tuned_lens")
  if cfg.load:  # a saved lens: a directory, or a name under this run's tuned_lens/
    path = cfg.load if os.sep in cfg.load else os.path.join(root, cfg.load)
    losses, name = np.zeros(0), os.path.basename(os.path.normpath(path))
  else:
    translators, losses = tuned_lens.train(pts["hidden"][:, ~held], readout, steps=cfg.steps, lr=cfg.lr,
                                           batch_size=cfg.batch_size, seed=seed)
    name, path = cfg.name, os.path.join(root, cfg.name)
    tuned_lens.save(root, name, translators, {"model_id": model_id, "steps": int(cfg.steps), "lr": float(cfg.lr),
                                              "train_points": int((~held).sum())})
  reloaded, meta = tuned_lens.load(os.path.dirname(path), name)  # reload by name
  if not cfg.load and any(not np.array_equal(np.asarray(reloaded[k]), np.asarray(translators[k])) for k in reloaded):
    raise RuntimeError(f"tuned lens {name!r}: the reloaded translators differ from the trained ones")
  if meta.get("layers") != pts["hidden"].shape[0] or meta.get("hidden") != pts["hidden"].shape[2]:
    raise ValueError(f"tuned lens {path}: {meta.get('layers')} layers x {meta.get('hidden')} wide, the model's LLM "
                     f"has {pts['hidden'].shape[0]} x {pts['hidden'].shape[2]}")
  logit = tuned_lens.layer_metrics(None, pts["hidden"][:, held], readout, pts["answer"][held], cfg.top_k)
  tuned = tuned_lens.layer_metrics(reloaded, pts["hidden"][:, held], readout, pts["answer"][held], cfg.top_k)
  # The same translators through model.apply's scanned lens agree with the offline readout.
  batch, positions, start, count = first
  scan = model.apply(params, batch, lens=Lens(positions, None, cfg.top_k, translator=reloaded)).lens
  offline = tuned_lens.layer_metrics(reloaded, pts["hidden"][:, start:start + count], readout)
  scan_diff = float(np.abs(np.asarray(scan["entropy"])[:, positions >= 0] - offline["entropy"]).max())
  kind = pts["kind"][held]
  return {"name": name, "dir": path, "loaded": bool(cfg.load), "losses": losses,
          "logit": summarise_lens(logit, kind, cfg.top_k), "tuned": summarise_lens(tuned, kind, cfg.top_k),
          "n_train_points": int((~held).sum()), "n_heldout_points": int(held.sum()),
          "n_heldout_samples": int(held_samples.sum()), "n_samples": len(records), "scan_vs_offline": scan_diff,
          "top_k": int(cfg.top_k)}


# --------------------------------------------------------------------------- stage: probes


def first_layer_at(acc, threshold):
  """1-based first layer with accuracy >= threshold, or None."""
  hits = np.flatnonzero(np.asarray(acc) >= threshold)
  return int(hits[0]) + 1 if len(hits) else None


def stage_probes(model, params, inputs, by_domain, domains, prompt_fn, config):
  from mmneuron_jax.analysis import layer_probes
  from mmneuron_jax.data.records import load_image
  cfg = config.probes
  records, _ = take(by_domain, domains, cfg.n_per_domain)
  batches = prompt_batches(inputs, records, prompt_fn, load_image, config.batch_size)
  results = {}
  for spec in cfg.specs:
    data = probe_dataset(model, params, batches, domains, spec, cfg.positions_per_sample, config.seed)
    r = layer_probes.run_probe(data["x"], data["y"], data["sample"], len(data["classes"]), frac=config.heldout_frac,
                               seed=config.seed, control_repeats=cfg.control_repeats, steps=cfg.steps, lr=cfg.lr,
                               l2=cfg.l2)
    rng = np.random.default_rng(config.seed)
    show = np.sort(rng.permutation(data["x"].shape[1])[:cfg.max_plot_points])
    proj, ratio = layer_probes.pca_2d(data["x"][:, show])
    results[spec] = {**{k: v for k, v in r.items() if k != "heldout"}, "classes": data["classes"],
                     "n_samples": int(len(np.unique(data["sample"]))), "points": int(data["x"].shape[1]),
                     "best_layer": int(np.argmax(r["heldout_acc"])) + 1,
                     "first_layer_at_threshold": first_layer_at(r["heldout_acc"], cfg.threshold),
                     "projection": proj, "explained": ratio, "projection_labels": data["y"][show]}
    logging.info("probe %s: held-out accuracy per layer %s (control %s)", spec,
                 np.round(r["heldout_acc"], 3).tolist(), np.round(r["control_acc"], 3).tolist())
  return results


# --------------------------------------------------------------------------- stage: learned masks


def load_dape_sets(compare_dir: str, modules) -> dict:
  """{module: NeuronSet} from an MMNeuron run dir (`neurons/<module>.json`) or a directory of
  `<module>.json` files; modules without a file are left out."""
  from mmneuron_jax.analysis.neuron_sets import NeuronSet
  if not os.path.isdir(compare_dir):
    raise FileNotFoundError(f"config.compare_sets_dir={compare_dir!r} is not a directory")
  out = {}
  for m in modules:
    for cand in (os.path.join(compare_dir, "neurons", f"{m}.json"), os.path.join(compare_dir, f"{m}.json")):
      if os.path.isfile(cand):
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
  from mmneuron_jax.analysis.learned_masks import group_losses
  nll, top1 = [], []
  for tf, n in tfs:
    logits = model.apply(params, tf["batch"], masks=masks).logits
    _, per_sample = group_losses(logits, jnp.asarray(tf["batch"]["input_ids"]), jnp.asarray(tf["answer_mask"]))
    at = np.asarray(logits)[np.arange(n), np.maximum(tf["last_prompt"][:n], 0)]
    nll.append(np.asarray(per_sample)[:n])
    top1.append((at.argmax(-1) == tf["answer_id"][:n]).astype(np.float64))
  return np.concatenate(nll), np.concatenate(top1)


def stage_masks(model, params, inputs, by_domain, domains, prompt_fn, config, workdir, model_id):
  from mmneuron_jax.analysis import learned_masks
  from mmneuron_jax.analysis.neuron_sets import NeuronSet
  from mmneuron_jax.data.records import load_image
  from mmneuron_jax.tasks import deactivation, sources
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
  set_dir = os.path.join(workdir, "neurons_learned")
  os.makedirs(set_dir, exist_ok=True)
  learned = {}
  for m in modules:
    layers, width = model.probe_modules[m]
    learned[m] = NeuronSet(model_id=model_id, module=m, group_names=domains, layers=layers, width=width, mask=masks[m],
                           meta={"method": "hard_concrete_l0", "steps": int(cfg.steps), "lr": float(cfg.lr),
                                 "l0_weight": float(cfg.l0_weight), "keep_weight": float(cfg.keep_weight),
                                 "train_samples_per_domain": int(cfg.n_per_domain)})
    learned[m].save(os.path.join(set_dir, f"{m}.json"))
  planted = None
  if config.data.source == "planted" and "llm" in learned:
    from mmneuron_jax.data import planted_llm
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


# --------------------------------------------------------------------------- the task


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
  from mmneuron_jax.tasks import readouts_report
  unknown = [s for s in config.stages if s not in STAGES]
  if unknown:
    raise ValueError(f"config.stages: unknown {unknown}; the readouts stages are {STAGES}")
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=1))
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
  with open(os.path.join(workdir, "readouts.json"), "w") as f:
    json.dump(_jsonable(results), f, indent=1)
  return readouts_report.write(workdir, config=config, model_id=model_id, domains=domains, bad=bad,
                               model=model, results=results)


def mmneuron_tuned_lens(study) -> dict:
  """The MMNeuron task's optional 'tuned_lens' stage: tuned vs logit lens on the study's records
  (statistics prompt + answer), translators in <workdir>/tuned_lens/, numbers in tuned_lens.json."""
  c = study.config
  result = stage_tuned_lens(study.model, study.params, study.inputs, study.by_domain, study.domains,
                            study.family.stats_prompt, c.tuned_lens, study.workdir, study.model_id,
                            batch_size=c.eval.batch_size, heldout_frac=c.tuned_lens.heldout_frac, seed=c.seed)
  with open(os.path.join(study.workdir, "tuned_lens.json"), "w") as f:
    json.dump(_jsonable(result), f, indent=1)
  return result
