"""Stage 'probes' of the readouts task: per-layer linear probes of domain or modality. A probe spec
'features:pool:label' picks the features (LLM residual stream, a probe module's neurons, or '*' =
every probe module of the model), the pooling (sampled tokens or per-sample means) and the label;
`probe_dataset` builds float32[L, N, F] points from prompt batches (the per-sample module means of
all specs from one forward pass per batch, `module_means`) and `stage_probes` fits one probe per
layer (held-out and control accuracy, PCA projection for the plots).
"""
import numpy as np
from absl import logging

from mmneuron_jax.analysis import layer_probes
from mmneuron_jax.data.sources.records import load_image
from mmneuron_jax.nn.probes import GroupStats
from mmneuron_jax.tasks.readouts.data import prompt_batches, residuals_at, sample_positions, take

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


def expand_probe_specs(specs, probe_modules) -> list[str]:
  """'*:pool:label' -> one spec per probe module (in `probe_modules` order, e.g. llm, vision,
  qformer_text, qformer_query for InstructBLIP); other specs unchanged; duplicates dropped."""
  out = []
  for spec in specs:
    head, sep, rest = spec.partition(":")
    out += [f"{m}:{rest}" for m in probe_modules] if head == "*" and sep else [spec]
  return list(dict.fromkeys(out))


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


def module_means(model, params, batch, n_rows: int, modules) -> dict:
  """Per-sample mean neurons of every module in `modules` from one forward pass (in-scan GroupStats
  over row ids; padding rows and tokens never count) -> {module: float32[L, n_rows, F]}."""
  b = np.asarray(batch["input_ids"]).shape[0]
  groups = model.token_groups(batch, np.where(np.arange(b) < n_rows, np.arange(b), -1).astype(np.int32))
  stats = model.apply(params, batch, probe={m: GroupStats(np.asarray(groups[m], np.int32), b) for m in modules}).probe
  return {m: (np.asarray(stats[m]["sum"]) / np.maximum(np.asarray(stats[m]["tokens"]), 1)[..., None])[:, :n_rows]
          for m in modules}


def batch_features(model, params, batch, n_rows: int, features: str, pool: str, per_sample: int, seed: int):
  """One batch -> (x float32[L, n, F], row int[n], is_image bool[n] (LLM tokens; False elsewhere)).

  hidden: the residual stream at sampled positions ('token': stratified over image / text tokens;
  'mean': the mean over up to `per_sample` uniformly sampled valid positions);
  module neurons: 'mean' = `module_means`, 'token' = captured neurons at sampled tokens (small inputs)."""
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
  if pool == "mean":
    return module_means(model, params, batch, n_rows, (features,))[features], np.arange(n_rows), np.zeros(n_rows, bool)
  groups = model.token_groups(batch, rows)[features]
  acts = np.asarray(model.apply(params, batch, capture=(features,)).aux[features])
  flat_groups = np.asarray(groups).reshape(-1)
  pick = _pick_tokens(flat_groups, per_sample, seed, is_image_tok.reshape(-1) if features == "llm" else None)
  x = acts.reshape(acts.shape[0], -1, acts.shape[-1])[:, pick]
  img = is_image_tok.reshape(-1)[pick] if features == "llm" else np.zeros(len(pick), bool)
  return x, flat_groups[pick], img


def probe_dataset(model, params, batches, domains, spec: str, per_sample: int, seed: int = 0, means=None) -> dict:
  """batches: [(records, padded batch)] -> {'x': float32[L, N, F], 'y': int[N], 'sample': int[N],
  'classes': [names]} for one probe spec (see `parse_probe_spec`). means: per batch {module:
  float32[L, n, F]} (`module_means`, one pass shared by several 'module:mean' specs) or None."""
  features, pool, label = parse_probe_spec(spec, model.probe_modules)
  xs, ys, samples = [], [], []
  offset = 0
  for b, (recs, batch) in enumerate(batches):
    if pool == "mean" and means is not None and features in means[b]:
      x, rows, img = means[b][features], np.arange(len(recs)), np.zeros(len(recs), bool)
    else:
      x, rows, img = batch_features(model, params, batch, len(recs), features, pool, per_sample, seed + b)
    xs.append(x)
    samples.append(offset + rows)
    ys.append(img.astype(np.int64) if label == "modality" else
              np.array([domains.index(recs[r].domain) for r in rows], np.int64))
    offset += len(recs)
  classes = ["text", "image"] if label == "modality" else list(domains)
  return {"x": np.concatenate(xs, axis=1), "y": np.concatenate(ys), "sample": np.concatenate(samples),
          "classes": classes}


def first_layer_at(acc, threshold):
  """First layer (numbered from 0, like every report) with accuracy >= threshold, or None."""
  hits = np.flatnonzero(np.asarray(acc) >= threshold)
  return int(hits[0]) if len(hits) else None


def stage_probes(model, params, inputs, by_domain, domains, prompt_fn, config):
  cfg = config.probes
  records, _ = take(by_domain, domains, cfg.n_per_domain)
  batches = prompt_batches(inputs, records, prompt_fn, load_image, config.batch_size)
  specs = expand_probe_specs(cfg.specs, model.probe_modules)
  parsed = [parse_probe_spec(spec, model.probe_modules) for spec in specs]  # every spec checked before any work
  shared = tuple(dict.fromkeys(f for f, pool, _ in parsed if f != "hidden" and pool == "mean"))
  means = [module_means(model, params, batch, len(recs), shared) for recs, batch in batches] if shared else None
  results = {}
  for spec in specs:
    data = probe_dataset(model, params, batches, domains, spec, cfg.positions_per_sample, config.seed, means)
    r = layer_probes.run_probe(data["x"], data["y"], data["sample"], len(data["classes"]), frac=config.heldout_frac,
                               seed=config.seed, control_repeats=cfg.control_repeats, steps=cfg.steps, lr=cfg.lr,
                               l2=cfg.l2)
    rng = np.random.default_rng(config.seed)
    show = np.sort(rng.permutation(data["x"].shape[1])[:cfg.max_plot_points])
    proj, ratio = layer_probes.pca_2d(data["x"][:, show])
    results[spec] = {**{k: v for k, v in r.items() if k != "heldout"}, "classes": data["classes"],
                     "n_samples": int(len(np.unique(data["sample"]))), "points": int(data["x"].shape[1]),
                     "best_layer": int(np.argmax(r["heldout_acc"])),
                     "first_layer_at_threshold": first_layer_at(r["heldout_acc"], cfg.threshold),
                     "projection": proj, "explained": ratio, "projection_labels": data["y"][show]}
    logging.info("probe %s: held-out accuracy per layer %s (control %s)", spec,
                 np.round(r["heldout_acc"], 3).tolist(), np.round(r["control_acc"], 3).tolist())
  return results
