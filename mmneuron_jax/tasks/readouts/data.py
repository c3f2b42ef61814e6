"""Batches and positions for the readouts task: teacher-forced prompt + answer batches (answer mask,
last prompt position, first answer token), prompt-only batches, seeded (optionally stratified)
position sampling, the LLM residual stream at those positions via the in-scan lens, and `take`, the
domain-major slice of records every stage trains or evaluates on.
"""
import numpy as np

from mmneuron_jax.analysis.logit_lens import Lens
from mmneuron_jax.data.inputs.batching import chunks


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


def residuals_at(model, params, batch, positions, multiple: int = 32):
  """LLM residual stream h_l (output of layer l) at `positions` int[B, P] -> float32[L, B, P, D]. P is
  padded (-1) to a multiple of `multiple` inside, so the lens and probe stages share one compile."""
  positions = np.asarray(positions, np.int32)
  padded = np.pad(positions, ((0, 0), (0, -positions.shape[1] % multiple)), constant_values=-1)
  out = model.apply(params, batch, lens=Lens(padded, None, 1, hidden=True))
  return np.asarray(out.lens["hidden"], np.float32)[:, :, :positions.shape[1]]


def prompt_batches(inputs, records, prompt_fn, load_image, batch_size: int, length_multiple: int = 32):
  """-> [(records chunk, batch padded to batch_size rows)] for prompts without answers."""
  out = []
  for chunk in chunks(records, batch_size):
    batch = inputs([prompt_fn(r) for r in chunk], [load_image(r) for r in chunk])
    out.append((chunk, inputs.pad(batch, batch_size, length_multiple)))
  return out


def take(by_domain, domains, n, start=0):
  """The records [start, start + n) of every domain, domain-major, with their domain index."""
  recs = [r for d in domains for r in by_domain[d][start:start + n]]
  return recs, np.array([domains.index(r.domain) for r in recs])
