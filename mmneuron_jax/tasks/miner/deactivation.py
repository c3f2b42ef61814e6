"""MINER deactivation: every dataset is answered with no masks, with the selected modality-specific
neurons switched off (all of them, one modality's, or all but them), and with a random set of the
same size per layer; answers are scored with the dataset's metric.

Conditions (config.deactivate.conditions):
  none          no neuron changed
  all           the union of every modality's set
  <modality>    that modality's set only (e.g. image, text, special)
  complement    every neuron EXCEPT the union ("keep only the selected")
  random        as many random neurons per layer as `all` (seeded control)
Value (config.deactivate.value): 'zero' (default) or 'min': the neuron is set to its layer's
activation-tensor minimum measured in stage 2 (`miner_scores.layer_minimum`), an affine mask
(scale, offset) applied at every prefill position and decode step.
"""
import numpy as np

from mmneuron_jax.analysis import miner
from mmneuron_jax.analysis.neuron_sets import NeuronSet
from mmneuron_jax.data.inputs.batching import chunks
from mmneuron_jax.io.progress import Progress
from mmneuron_jax.tasks.miner import data as miner_data
from mmneuron_jax.tasks.miner.inputs import pad_to


def random_union(selected, seed: int) -> np.ndarray:
  """bool[M, L, F] -> bool[1, L, F]: per layer, as many uniformly drawn neurons as the union has."""
  union = np.asarray(selected).any(axis=0)[None]
  s = NeuronSet(model_id="", module="llm", group_names=["union"], layers=union.shape[1], width=union.shape[2],
                mask=union)
  return s.random_like(seed).mask


def condition_masks(condition: str, selected, names, value: str, layer_min, seed: int):
  """-> (scale float32[L, F], offset float32[L, F]) of one condition; see the module docstring."""
  sel = np.asarray(selected, bool)
  if condition == "none":
    return miner.deactivation_masks(sel, modalities=[], value=value, acts_min=layer_min)
  if condition == "all":
    return miner.deactivation_masks(sel, value=value, acts_min=layer_min)
  if condition == "complement":
    return miner.deactivation_masks(sel, complement=True, value=value, acts_min=layer_min)
  if condition == "random":
    return miner.deactivation_masks(random_union(sel, seed), value=value, acts_min=layer_min)
  if condition in names:
    return miner.deactivation_masks(sel, modalities=[list(names).index(condition)], value=value, acts_min=layer_min)
  raise ValueError(f"config.deactivate.conditions: unknown condition {condition!r}; expected none, all, complement, "
                   f"random or a selected modality {list(names)}")


def model_masks(scale, offset, value: str) -> dict:
  """The `masks` argument for the LLM: the multiplicative mask for 'zero', (scale, offset) otherwise."""
  return {"llm": scale} if value == "zero" else {"llm": (scale, offset)}


def generate(model, params, batch, masks, max_new_tokens, eos_ids, pad_id, temperature=0.0, seed=0, sampling=None):
  """`model.generate` with plain or affine (scale, offset) masks (nn.mlp.apply_mask); `sampling` (a
  models.sampling.Sampling: HF decoding settings) replaces `temperature` when given."""
  settings = {"temperature": temperature} if sampling is None else sampling.as_dict()
  return model.generate(params, batch, max_new_tokens=max_new_tokens, masks=masks, eos_token_id=eos_ids,
                        pad_token_id=pad_id, seed=seed, **settings)


def answers_for(model, params, inputs, samples, masks, cfg, seed, progress=None, sampling=None) -> list:
  """Generated answers (decoded, stripped) for `samples`, batched and left padded."""
  out = []
  for i, chunk in enumerate(chunks(samples, cfg.batch_size)):
    batch, _ = pad_to(inputs.batch(chunk, "left"), None, cfg.length_bucket, inputs.pad_id, "left")
    tokens = generate(model, params, batch, masks, cfg.max_new_tokens, inputs.eos_ids(), inputs.pad_id,
                      cfg.get("temperature", 0.0), seed + i, sampling)
    out += inputs.decode(np.where(tokens == inputs.pad_id, -1, tokens))
    if progress is not None:
      progress.update(len(chunk))
  return out


def evaluate(model, params, inputs, samples_by_dataset, originals, selected, names, layer_min, cfg, source,
             seed=0, sampling=None) -> tuple:
  """-> (rows [{'dataset', 'condition', 'value', 'neurons_off', 'n', metrics...}],
  predictions {'dataset|condition': [str]}). sampling: HF decoding settings (None: cfg.temperature)."""
  conditions = list(cfg.conditions)
  masks = {c: condition_masks(c, selected, names, cfg.value, layer_min, seed) for c in conditions}
  evals = {d: s[:cfg.n_per_dataset or None] for d, s in samples_by_dataset.items()}
  progress = Progress(sum(map(len, evals.values())) * len(conditions), "MINER deactivation (samples)", unit="samples")
  rows, predictions = [], {}
  for dataset, samples in evals.items():
    for condition in conditions:
      scale, offset = masks[condition]
      answers = answers_for(model, params, inputs, samples, model_masks(scale, offset, cfg.value), cfg, seed,
                            progress, sampling)
      per_sample = [miner_data.score(source, dataset, a, originals.get((dataset, s.id), s))
                    for a, s in zip(answers, samples)]
      summary = miner_data.summarize(source, dataset, per_sample)
      base = predictions.get(f"{dataset}|none")
      changed = None if base is None else float(np.mean([a != b for a, b in zip(answers, base)]))
      rows.append({"dataset": dataset, "condition": condition, "value": cfg.value,
                   "neurons_off": int((scale == 0).sum()), **summary, "n": len(samples),
                   **({} if changed is None else {"changed_vs_none": changed})})
      predictions[f"{dataset}|{condition}"] = answers
  progress.close()
  return rows, predictions
