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


def answer_budgets(batch, image_token_id, max_length, prompt_image_tokens=1):
  """int[B] new-token budget per row under HF's `max_length` (prompt + answer): max_length minus
  the prompt's tokens with the image counted as `prompt_image_tokens` tokens (its expanded
  placeholders in `input_ids` removed), at least 1 (HF generates one token past a full prompt)."""
  ids = np.asarray(batch["input_ids"])
  real = np.asarray(batch["attention_mask"]) > 0 if "attention_mask" in batch else np.ones(ids.shape, bool)
  image = ((ids == image_token_id) & real).sum(axis=1)
  prompt = real.sum(axis=1) - image + np.where(image > 0, prompt_image_tokens, 0)
  return np.maximum(1, int(max_length) - prompt)


def generate_answers(model, params, inputs, records, prompt_fn, load_image, masks, batch_size, max_new_tokens,
                     temperature=0.0, seed=0, progress=None, max_length=0, prompt_image_tokens=1):
  """Greedy (or seeded sampled) answers for `records`, batched and left-padded. max_new_tokens > 0:
  that many new tokens per row; else each row stops at `max_length` (prompt + answer,
  `answer_budgets`; one compiled length per multiple of 32 steps, cut per row)."""
  if max_new_tokens <= 0 and max_length <= 0:
    raise ValueError("config.eval: set max_length (prompt + answer) or max_new_tokens > 0")
  answers = []
  for i, chunk in enumerate(chunks(records, batch_size)):
    batch = inputs([prompt_fn(r) for r in chunk], [load_image(r) for r in chunk], padding_side="left")
    budgets = (np.full(len(chunk), max_new_tokens) if max_new_tokens > 0 else
               answer_budgets(batch, inputs.image_token_id, max_length, prompt_image_tokens))
    steps = int(budgets.max()) if max_new_tokens > 0 else -(-int(budgets.max()) // 32) * 32
    batch = inputs.pad(batch, len(chunk), 32, padding_side="left")
    tokens = model.generate(params, batch, max_new_tokens=steps, masks=masks, pad_token_id=inputs.pad_id,
                            eos_token_id=inputs.tokenizer.eos_token_id, temperature=temperature, seed=seed + i)
    tokens = np.where(np.arange(tokens.shape[1])[None] < budgets[:, None], tokens, inputs.pad_id)
    answers += inputs.decode(np.where(tokens == inputs.pad_id, -1, tokens))
    if progress is not None:
      progress.update(len(chunk))
  return answers


def plans(conditions: dict) -> list[tuple[str, str]]:
  """(condition, control) pairs: every condition with DAPE neurons, every non-empty one also random."""
  return [(c, "dape") for c in conditions] + [(c, "random") for c in conditions if conditions[c]]


def evaluate(model, params, inputs, records_by_domain, neuron_sets, random_sets, prompt_fn, load_image, score_fn,
             *, conditions, batch_size=8, max_new_tokens=16, temperature=0.0, seed=0, max_length=0,
             prompt_image_tokens=1):
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
                                 max_new_tokens, temperature, seed, progress, max_length, prompt_image_tokens)
      predictions[(domain, condition, control)] = answers
      scores = score_fn(answers, records)
      removed = int(sum((1 - np.asarray(m)).sum() for m in masks.values()))
      rows.append({"domain": domain, "condition": condition, "control": control, "n": len(records),
                   "neurons_off": removed, **scores})
  progress.close()
  return rows, predictions
