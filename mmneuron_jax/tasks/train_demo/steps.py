"""Answer-token cross-entropy through the analyses' own forward (`models.base.forward`), and an
optax (Adam) train step over fixed-shape batches (one compile for the whole run).

A training row is `prompt + " " + answer + " " + EOS`, right-padded; the loss is the mean token NLL
of the answer tokens and EOS given everything before them (the prompt's tokens carry no loss).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mmneuron_jax.models.base import forward


def answer_rows(inputs, prompts, answers, images) -> dict:
  """HF-named right-padded batch of `prompt answer EOS` rows (not yet padded to a fixed shape). A
  second text stream the image encoder reads (InstructBLIP's `qformer_input_ids`) gets the prompt
  alone, as at evaluation: the answer must not reach the model through the image path."""
  batch = inputs([f"{p} {a}" for p, a in zip(prompts, answers)], images, padding_side="right")
  # EOS appended by id: a builder that splits special tokens in text (InstructBLIP's) would read "</s>" as text.
  ids, am = batch["input_ids"], batch["attention_mask"]
  ends = am.sum(axis=1)
  ids = np.concatenate([ids, np.zeros_like(ids[:, :1])], axis=1)
  am = np.concatenate([am, np.zeros_like(am[:, :1])], axis=1)
  pad_id = inputs.pad_id
  ids[:, -1] = pad_id
  ids[np.arange(len(ends)), ends] = inputs.tokenizer.eos_token_id
  am[np.arange(len(ends)), ends] = 1
  batch["input_ids"], batch["attention_mask"] = ids, am
  if "qformer_input_ids" in batch:
    prompt_only = inputs(list(prompts), images, padding_side="right")
    batch["qformer_input_ids"] = prompt_only["qformer_input_ids"]
    batch["qformer_attention_mask"] = prompt_only["qformer_attention_mask"]
  return batch


def answer_batch(inputs, rows_batch: dict, answers, rows: int, length: int) -> dict:
  """`answer_rows` padded to [rows, length], plus 'targets' int32[rows, length-1] (the next token)
  and 'weights' float32[rows, length-1] (1 where the next token is an answer token or EOS).
  Empty rows (beyond len(answers)) have weight 0."""
  tok = inputs.tokenizer
  if rows_batch["input_ids"].shape[1] > length:
    raise ValueError(f"answer_batch: a row has {rows_batch['input_ids'].shape[1]} tokens, more than length={length}")
  batch = inputs.pad(rows_batch, rows, length, padding_side="right")
  ids, am = batch["input_ids"], batch["attention_mask"]
  weights = np.zeros((rows, length - 1), np.float32)
  for i, a in enumerate(answers):
    n_answer = len(tok(a, add_special_tokens=False)["input_ids"]) + 1  # + EOS
    end = int(am[i].sum())  # tokens in row i
    weights[i, end - 1 - n_answer:end - 1] = 1.0  # logits at t predict token t + 1
  batch["targets"] = ids[:, 1:].astype(np.int32)
  batch["weights"] = weights
  return batch


def same_widths(batches: list, keys, pad_id: int = 0) -> list:
  """Right-pad the [B, T] arrays `keys` (e.g. InstructBLIP's Q-Former ids / mask) of every batch to
  the widest one, so every batch has one shape (ids with `pad_id`, masks with 0)."""
  for key in keys:
    if not batches or key not in batches[0]:
      continue
    width = max(b[key].shape[1] for b in batches)
    for b in batches:
      a = b[key]
      fill = 0 if "mask" in key else pad_id
      b[key] = np.concatenate([a, np.full((a.shape[0], width - a.shape[1]), fill, a.dtype)], axis=1)
  return batches


def answer_loss(module, params, batch):
  """Mean NLL (nats) of the weighted next tokens; batch holds the device keys + targets, weights."""
  out = forward(module, params, batch)
  logp = jax.nn.log_softmax(out.logits[:, :-1].astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(logp, batch["targets"][..., None], axis=-1)[..., 0]
  w = batch["weights"]
  return (nll * w).sum() / jnp.maximum(w.sum(), 1.0)


def optimizer(lr: float, steps: int, warmup: int, clip: float = 1.0):
  """Adam with linear warmup then cosine decay to 10% of `lr`, global-norm clipping."""
  schedule = optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(steps, warmup + 1), lr * 0.1)
  return optax.chain(optax.clip_by_global_norm(clip), optax.adam(schedule))


def make_train_step(module, tx):
  """jit((params, opt_state, batch) -> (params, opt_state, loss))."""
  module = module.clone(capture=())

  @jax.jit
  def step(params, opt_state, batch):
    loss, grads = jax.value_and_grad(functools.partial(answer_loss, module))(params, batch)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return step


def device_batch(model, batch: dict) -> dict:
  """The model's device arrays of a prepared answer batch, plus targets and weights."""
  out = model.device_batch(batch)
  out["targets"], out["weights"] = jnp.asarray(batch["targets"]), jnp.asarray(batch["weights"])
  return out
