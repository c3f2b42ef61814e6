"""MMNeuron deactivation: each domain evaluated with its own neurons switched off, per condition,
plus a random-neuron control of the same size."""
import numpy as np

from mmneuron_jax.data.batching import chunks, pad_batch
from mmneuron_jax.io.progress import Progress

# condition -> probe modules whose domain neurons are deactivated
LLAVA_CONDITIONS = {
    "none": (),
    "llm": ("llm",),
    "vision": ("vision", "projector"),
    "projector": ("projector",),
    "all": ("llm", "vision", "projector"),
}


def condition_masks(neuron_sets: dict, modules, domain: str) -> dict:
  """{module: float32[L, F]} for every module: `domain`'s neurons zeroed in `modules`, ones
  elsewhere (one pytree structure for all conditions, so generation compiles once)."""
  return {m: (s.to_masks(groups=[domain]) if m in modules else np.ones((s.layers, s.width), np.float32))
          for m, s in neuron_sets.items()}


def generate_answers(model, params, inputs, records, prompt_fn, load_image, masks, batch_size, max_new_tokens,
                     temperature=0.0, seed=0, progress=None):
  """Greedy (or seeded sampled) answers for `records`, batched and left-padded."""
  answers = []
  for i, chunk in enumerate(chunks(records, batch_size)):
    batch = inputs([prompt_fn(r) for r in chunk], [load_image(r) for r in chunk], padding_side="left")
    pad_id = inputs.tokenizer.pad_token_id or 0
    batch = pad_batch(batch, len(chunk), 32, None, pad_id)
    tokens = model.generate(params, batch, max_new_tokens=max_new_tokens, masks=masks, pad_token_id=pad_id,
                            eos_token_id=inputs.tokenizer.eos_token_id, temperature=temperature, seed=seed + i)
    answers += inputs.decode(np.where(tokens == pad_id, -1, tokens))
    if progress is not None:
      progress.update(len(chunk))
  return answers


def evaluate(model, params, inputs, records_by_domain, neuron_sets, random_sets, prompt_fn, load_image, score_fn,
             conditions=LLAVA_CONDITIONS, batch_size=8, max_new_tokens=16, temperature=0.0, seed=0):
  """-> list of rows {'domain', 'condition', 'control' ('dape'|'random'), metrics..., 'n'} and the
  predictions {(domain, condition, control): [answers]}."""
  rows, predictions = [], {}
  plans = [(c, "dape") for c in conditions] + [(c, "random") for c in conditions if conditions[c]]
  total = sum(len(r) for r in records_by_domain.values()) * len(plans)
  progress = Progress(total, "deactivation eval (samples)")
  for domain, records in records_by_domain.items():
    for condition, control in plans:
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
