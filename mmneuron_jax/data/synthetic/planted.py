"""Planted ground truth: a tiny LLaVA-NeXT whose vision neurons are domain-specific by design.

Each domain's images are one hue (plus noise). In the vision tower the patch embedding carries
the patch's mean colour in dims 0..2 and a large position code elsewhere; attention and MLP
outputs are zeroed, so every layer sees the same normalised embedding. Planted neurons read
only the colour dims and fire for one hue; every other neuron reads only the position code,
so it fires equally often in every domain. DAPE must find exactly the planted ones.
"""
import io

import numpy as np

# Hues on the colour hexagon: each is separable from the others by a threshold on one direction.
HUES = {"red": (1.0, 0.0, 0.0), "yellow": (1.0, 1.0, 0.0), "green": (0.0, 1.0, 0.0), "cyan": (0.0, 1.0, 1.0),
        "blue": (0.0, 0.0, 1.0), "magenta": (1.0, 0.0, 1.0)}
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711])
VP = "vision_tower.vision_model."


def planted_indices(num_domains: int, per_domain: int, width: int, layer: int, seed: int = 0) -> np.ndarray:
  """bool[D, L?] is built by `planted_mask`; here: int[D, per_domain] neuron ids (disjoint)."""
  rng = np.random.default_rng(seed + 17)
  ids = rng.choice(width, size=num_domains * per_domain, replace=False)
  return ids.reshape(num_domains, per_domain)


def planted_mask(num_domains, layers, width, layer, per_domain, seed=0) -> np.ndarray:
  """bool[D, L, F]: the planted (domain, layer, neuron) triples."""
  mask = np.zeros((num_domains, layers, width), bool)
  for d, ids in enumerate(planted_indices(num_domains, per_domain, width, layer, seed)):
    mask[d, layer, ids] = True
  return mask


def edit_state_fn(hues, layer=1, per_domain=3, seed=0, position_scale=3.0):
  """-> edit_state(state, config, vocab) for `demo_llava_next.build_demo_checkpoint`."""

  def edit(state, config, vocab):
    del vocab
    v = config["vision_config"]
    d, f, p, n_layers = v["hidden_size"], v["intermediate_size"], v["patch_size"], v["num_hidden_layers"]
    rng = np.random.default_rng(seed)
    patch = np.zeros((d, 3, p, p), np.float32)
    for c in range(3):
      patch[c, c] = 1.0 / (p * p)
    state[VP + "embeddings.patch_embedding.weight"] = patch
    state[VP + "embeddings.class_embedding"] = np.zeros((d,), np.float32)
    pos = np.zeros(state[VP + "embeddings.position_embedding.weight"].shape, np.float32)
    pos[:, 3:] = position_scale * rng.standard_normal((pos.shape[0], d - 3))
    state[VP + "embeddings.position_embedding.weight"] = pos
    for name in ("pre_layrnorm",):
      state[VP + f"{name}.weight"], state[VP + f"{name}.bias"] = np.ones(d, np.float32), np.zeros(d, np.float32)
    colours = (np.array([HUES[h] for h in hues]) - CLIP_MEAN) / CLIP_STD
    centred = colours - colours.mean(axis=1, keepdims=True)  # LayerNorm removes the grey axis
    planted = planted_indices(len(hues), per_domain, f, layer, seed)
    sigma = position_scale * np.sqrt((d - 3) / d)
    for i in range(n_layers):
      lp = f"{VP}encoder.layers.{i}."
      for name in ("self_attn.out_proj", "mlp.fc2"):
        state[lp + name + ".weight"] = np.zeros_like(state[lp + name + ".weight"])
        state[lp + name + ".bias"] = np.zeros_like(state[lp + name + ".bias"])
      state[lp + "layer_norm2.weight"], state[lp + "layer_norm2.bias"] = np.ones(d, np.float32), np.zeros(d, np.float32)
      w = rng.standard_normal((f, d)).astype(np.float32)
      w[:, :3] = 0.0
      w[:, 3:] -= w[:, 3:].mean(axis=1, keepdims=True)  # blind to the LayerNorm mean
      w /= np.sqrt(d)
      b = np.full((f,), -1.2, np.float32)  # random neurons fire rarely (p well below tau)
      if i == layer:
        for dom, ids in enumerate(planted):
          direction = centred[dom] / np.linalg.norm(centred[dom])
          own = direction @ colours[dom]
          others = max(direction @ colours[e] for e in range(len(hues)) if e != dom)
          w[ids] = 0.0
          w[ids, :3] = 4.0 * direction
          b[ids] = -4.0 * (own + others) / 2 / sigma
      state[lp + "mlp.fc1.weight"], state[lp + "mlp.fc1.bias"] = w, b
    return state

  return edit


def hue_image(hue: str, size_hw, seed: int, noise: float = 0.03) -> bytes:
  """PNG bytes of a `hue` image with a little pixel noise."""
  from PIL import Image
  rng = np.random.default_rng(seed)
  h, w = size_hw
  img = np.clip(np.array(HUES[hue])[None, None] + noise * rng.standard_normal((h, w, 3)), 0, 1)
  buf = io.BytesIO()
  Image.fromarray((img * 255).astype(np.uint8)).save(buf, format="PNG")
  return buf.getvalue()
