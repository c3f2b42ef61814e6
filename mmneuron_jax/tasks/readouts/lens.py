"""Stage 'tuned_lens' of the readouts task: residuals at sampled positions of teacher-forced records,
translators trained (or loaded) on the training samples, saved with orbax and reloaded by name, then
tuned vs logit lens per layer on held-out samples (image / text / answer points) and a check that
the scanned lens of `model.apply` agrees with the offline readout.
"""
import os

import numpy as np

from mmneuron_jax.analysis import layer_probes, tuned_lens
from mmneuron_jax.analysis.logit_lens import Lens
from mmneuron_jax.data.inputs.batching import chunks
from mmneuron_jax.data.sources.records import load_image
from mmneuron_jax.io import tuned_lens as saved_lens
from mmneuron_jax.io.progress import Progress
from mmneuron_jax.tasks.readouts.data import residuals_at, sample_positions, take, teacher_forced


def lens_points(model, params, inputs, records, prompt_fn, batch_size, per_sample, seed):
  """Residuals at sampled positions (+ the last prompt position) of teacher-forced records ->
  {'hidden': float32[L, N, D], 'sample': int[N], 'kind': str[N] ('image'|'text'|'answer'),
  'answer': int[N] (answer token at 'answer' points, else -1)} and the first batch's
  (batch, positions, point slice) for the in-scan check."""
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
    saved_lens.save(root, name, translators, {"model_id": model_id, "steps": int(cfg.steps), "lr": float(cfg.lr),
                                              "train_points": int((~held).sum())})
  reloaded, meta = saved_lens.load(os.path.dirname(path), name)  # reload by name
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
