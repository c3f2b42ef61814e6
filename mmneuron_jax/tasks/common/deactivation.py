"""MMNeuron deactivation: each domain evaluated with its own neurons switched off, per condition,
plus a random-neuron control of the same size. The conditions come from the model family
(tasks/common/families.py: condition name -> probe modules)."""
import numpy as np

from mmneuron_jax.data.inputs.batching import chunks
from mmneuron_jax.io.progress import Progress


def condition_masks(neuron_sets: dict, modules, domain: str) -> dict:
  """{module: float32[L, F]} for every module: `domain`'s neurons zeroed in `modules`, ones
  elsewhere (one pytree structure for all conditions, so generation compiles once)."""
  unknown = set(modules) - set(neuron_sets)
  if unknown:
    raise KeyError(f"condition modules {sorted(unknown)} have no neuron set; sets: {sorted(neuron_sets)}")
  return {m: (s.to_masks(groups=[domain]) if m in modules else np.ones((s.layers, s.width), np.float32))
          for m, s in neuron_sets.items()}


def generate_answers(model, params, inputs, records, prompt_fn, load_image, masks, batch_size, max_new_tokens,
                     temperature=0.0, seed=0, progress=None):
  """Greedy (or seeded sampled) answers for `records`, batched and left-padded."""
  answers = []
  for i, chunk in enumerate(chunks(records, batch_size)):
    batch = inputs([prompt_fn(r) for r in chunk], [load_image(r) for r in chunk], padding_side="left")
    batch = inputs.pad(batch, len(chunk), 32, padding_side="left")
    tokens = model.generate(params, batch, max_new_tokens=max_new_tokens, masks=masks, pad_token_id=inputs.pad_id,
                            eos_token_id=inputs.tokenizer.eos_token_id, temperature=temperature, seed=seed + i)
    answers += inputs.decode(np.where(tokens == inputs.pad_id, -1, tokens))
    if progress is not None:
      progress.update(len(chunk))
  return answers


def plans(conditions: dict) -> list[tuple[str, str]]:
  """(condition, control) pairs: every condition with DAPE neurons, every non-empty one also random."""
  return [(c, "dape") for c in conditions] + [(c, "random") for c in conditions if conditions[c]]


def evaluate(model, params, inputs, records_by_domain, neuron_sets, random_sets, prompt_fn, load_image, score_fn,
             *, conditions, batch_size=8, max_new_tokens=16, temperature=0.0, seed=0):
  """-> list of rows {'domain', 'condition', 'control' ('dape'|'random'), metrics..., 'n'} and the
  predictions {(domain, condition, control): [answers]}."""
  rows, predictions = [], {}
  todo = plans(conditions)
  progress = Progress(sum(len(r) for r in records_by_domain.values()) * len(todo), "deactivation eval (samples)")
  for domain, records in records_by_domain.items():
    for condition, control in todo:
      sets = neuron_sets if control == "dape" else random_sets
      masks = condition_masks(sets, conditions[condition], domain)
      answers = generate_answers(model, params, inputs, records, prompt_fn, load_image, masks, batch_size,
                                 max_new_tokens, temperature, seed, progress)
      predictions[(domain, condition, control)] = answers
      scores = score_fn(answers, records)
      removed = int(sum((1 - np.asarray(m)).sum() for m in masks.values()))
      rows.append({"domain": domain, "condition": condition, "control": control, "n": len(records),
                   "neurons_off": removed, **scores})
  progress.close()
  return rows, predictions
