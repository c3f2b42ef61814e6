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
from mmneuron_jax.data.batching import chunks, pad_batch, round_up

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
  batch = pad_batch(batch, rows, length_multiple, None, tok.pad_token_id or 0)
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
    out.append((chunk, pad_batch(batch, batch_size, length_multiple, None, inputs.tokenizer.pad_token_id or 0)))
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
