"""Logit lens per domain: mean entropy per layer, top-1 token, at every position (the authors'
logit_len.py decodes every position of the sequence) or at image-token positions only. Image tokens
are the family's image placeholder positions (LLaVA-NeXT: anyres features; InstructBLIP: the
Q-Former query outputs); both means come from the same forward pass."""
import collections

import numpy as np

from mmneuron_jax.analysis.logit_lens import Lens, layer_means, positions_where
from mmneuron_jax.data.inputs.batching import chunks

POSITIONS = ("all", "image")


def domain_lens(model, params, inputs, records, prompt_fn, load_image, batch_size=8, top_k=5, positions="all"):
  """-> {'entropy': float[L] mean nats over the `positions` ('all' real tokens | 'image'),
  'entropy_image': float[L] mean nats at image positions, 'top1': [L] most frequent top-1 token,
  'top1_prob': float[L] mean top-1 probability, 'positions': int, 'image_positions': int} over `records`."""
  if positions not in POSITIONS:
    raise ValueError(f"config.lens.positions={positions!r}; expected one of {POSITIONS}")
  ent_sum = prob_sum = img_sum = None
  count = img_count = 0
  top1 = None
  for chunk in chunks(records, batch_size):
    batch = inputs.pad(inputs([prompt_fn(r) for r in chunk], [load_image(r) for r in chunk]), len(chunk), 64)
    ids = np.asarray(batch["input_ids"])
    real = np.asarray(batch["attention_mask"]) > 0 if "attention_mask" in batch else np.ones(ids.shape, bool)
    image = (ids == inputs.image_token_id) & real
    pos = positions_where(real if positions == "all" else image)
    out = model.apply(params, batch, lens=Lens(pos, None, top_k))
    valid = pos >= 0
    at_image = np.take_along_axis(image, np.clip(pos, 0, None), axis=1) & valid
    n, n_img = int(valid.sum()), int(at_image.sum())
    entropy = np.asarray(out.lens["entropy"], np.float64)
    ent = layer_means(entropy, pos) * n
    img = (entropy * at_image[None]).sum(axis=(1, 2))
    prob = layer_means(out.lens["top_probs"][..., 0], pos) * n
    top_ids = np.asarray(out.lens["top_ids"][..., 0])[:, valid]
    ent_sum = ent if ent_sum is None else ent_sum + ent
    img_sum = img if img_sum is None else img_sum + img
    prob_sum = prob if prob_sum is None else prob_sum + prob
    if top1 is None:
      top1 = [collections.Counter() for _ in range(top_ids.shape[0])]
    for layer, row in enumerate(top_ids):
      top1[layer].update(row.tolist())
    count += n
    img_count += n_img
  return {"entropy": ent_sum / max(count, 1), "entropy_image": img_sum / max(img_count, 1),
          "top1_prob": prob_sum / max(count, 1),
          "top1": [inputs.tokenizer.convert_ids_to_tokens(c.most_common(1)[0][0]) for c in top1],
          "positions": count, "image_positions": img_count}


def table(results: dict) -> list:
  """{domain: `domain_lens` result} -> rows {domain, layer (from 0, as in the report), entropy,
  entropy_image, top1, top1_prob, positions, image_positions}, one per domain and LLM layer."""
  rows = []
  for domain, r in results.items():
    per_layer = [k for k in ("entropy", "entropy_image", "top1", "top1_prob") if k in r]
    for layer in range(len(r["entropy"])):
      rows.append({"domain": domain, "layer": layer,
                   **{k: np.asarray(r[k]).tolist()[layer] for k in per_layer},
                   **{k: r[k] for k in ("positions", "image_positions") if k in r}})
  return rows
