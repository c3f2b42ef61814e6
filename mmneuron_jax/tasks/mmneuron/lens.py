"""Logit lens over image-token positions, per domain: mean entropy per layer, top-1 token.
Image tokens are the family's image placeholder positions (LLaVA-NeXT: anyres features;
InstructBLIP: the Q-Former query outputs)."""
import collections

import numpy as np

from mmneuron_jax.analysis.logit_lens import Lens, layer_means, positions_where
from mmneuron_jax.data.inputs.batching import chunks


def domain_lens(model, params, inputs, records, prompt_fn, load_image, batch_size=8, top_k=5):
  """-> {'entropy': float[L] mean nats at image positions, 'top1': [L] most frequent top-1 token,
  'top1_prob': float[L] mean top-1 probability, 'positions': int} over `records`."""
  ent_sum = prob_sum = None
  count = 0
  top1 = None
  for chunk in chunks(records, batch_size):
    batch = inputs.pad(inputs([prompt_fn(r) for r in chunk], [load_image(r) for r in chunk]), len(chunk), 64)
    positions = positions_where(np.asarray(batch["input_ids"]) == inputs.image_token_id)
    out = model.apply(params, batch, lens=Lens(positions, None, top_k))
    valid = positions >= 0
    n = int(valid.sum())
    ent = layer_means(out.lens["entropy"], positions) * n
    prob = layer_means(out.lens["top_probs"][..., 0], positions) * n
    ids = np.asarray(out.lens["top_ids"][..., 0])[:, valid]
    ent_sum = ent if ent_sum is None else ent_sum + ent
    prob_sum = prob if prob_sum is None else prob_sum + prob
    if top1 is None:
      top1 = [collections.Counter() for _ in range(ids.shape[0])]
    for layer, row in enumerate(ids):
      top1[layer].update(row.tolist())
    count += n
  return {"entropy": ent_sum / max(count, 1), "top1_prob": prob_sum / max(count, 1),
          "top1": [inputs.tokenizer.convert_ids_to_tokens(c.most_common(1)[0][0]) for c in top1],
          "positions": count}
