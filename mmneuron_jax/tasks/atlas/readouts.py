"""Per-neuron readouts for the atlas pages.

- Logit lens of an LLM neuron: its output direction (row j of the MLP's down projection,
  `down.kernel[l, j]` float[D]) times the final norm's gain, through the unembedding: the tokens
  it promotes most (no normalisation by the residual's RMS: a direction, not a state).
- Effect of switching it off on its group's held-out answer loss, first order: with a ones mask m
  on every neuron, NLL(m with m[l, j] = 0) - NLL(1) ~= -dNLL/dm[l, j] (`analysis.importance`,
  one backward pass per group serves every neuron), divided by the number of answer tokens.
"""
import numpy as np

from mmneuron_jax.analysis.importance import grad_importance
from mmneuron_jax.tasks.readouts.data import teacher_forced


def logit_lens(params, layer, index, top: int = 8):
  """LLM params, neurons (layer int[S], index int[S]) -> (token ids int[S, top], logits
  float32[S, top]) promoted by each neuron's output direction; None if the LLM has no
  `layers.mlp.down` / unembedding."""
  llm = params.get("llm", {}) if isinstance(params, dict) else {}
  try:
    down = llm["layers"]["mlp"]["down"]["kernel"]  # [L, F, D]
    gain = np.asarray(llm["final_norm"], np.float32)
  except (KeyError, TypeError):
    return None
  unembed = np.asarray(llm["lm_head"], np.float32) if "lm_head" in llm else np.asarray(llm["embed_tokens"], np.float32).T
  directions = np.asarray(down, np.float32)[np.asarray(layer), np.asarray(index)] * gain  # [S, D]
  logits = directions @ unembed  # [S, V]
  ids = np.argsort(-logits, axis=1, kind="stable")[:, :top]
  return ids, np.take_along_axis(logits, ids, 1)


def effects(model, params, inputs, records_by_group: list, prompt_fn, load_image, modules, batch_size: int) -> dict:
  """records_by_group [G] lists of held-out records (with answers) -> {module: float32[G, L, F]}:
  first-order change of the mean answer-token NLL when each neuron is switched off (NaN for a
  group without records)."""
  out = {m: np.full((len(records_by_group),) + tuple(model.probe_modules[m]), np.nan, np.float32) for m in modules}
  for g, recs in enumerate(records_by_group):
    total = {m: 0.0 for m in modules}
    tokens = 0
    for i in range(0, len(recs), batch_size):
      tf = teacher_forced(inputs, recs[i:i + batch_size], prompt_fn, load_image, rows=batch_size, length_multiple=128)
      if not tf["answer_mask"].any():
        continue
      grads = grad_importance(model, params, tf["batch"], tf["answer_mask"], modules=tuple(modules))
      for m in modules:
        total[m] = total[m] + np.asarray(grads[m], np.float64)
      tokens += int(tf["answer_mask"].sum())
    if tokens:
      for m in modules:
        out[m][g] = (-total[m] / tokens).astype(np.float32)
  return out
