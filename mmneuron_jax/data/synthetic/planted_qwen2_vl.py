"""Planted ground truth for MINER: a tiny Qwen2-VL whose LLM neurons are modality-specific by design.

Every input position carries its modality in one residual-stream direction: text-token embeddings
are `scale * e_0`, special-token embeddings (<|im_start|>, <|im_end|>, <|vision_start|>,
<|vision_end|>) `scale * e_1`, and the vision merger outputs `scale * e_2` for every image token
(its last linear layer's bias), each plus noise on the other dimensions (3..D-1). Attention and MLP
outputs of the LLM are zeroed (o_proj, down_proj), so every layer sees the same normalised input.
In every layer, `per_layer` neurons per modality read only that modality's direction (gate row =
gain * e_m): large activation on their modality's tokens, silu(0) = 0 elsewhere. Every other
neuron reads only the noise dimensions, so it behaves alike on all modalities. MINER's stages
1-4 must return exactly the planted (modality, layer, neuron) triples.
"""
import numpy as np

MODALITY_DIMS = {"text": 0, "special": 1, "image": 2}
SPECIAL_TOKENS = ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>")


def planted_indices(layers: int, width: int, per_layer: int, seed: int = 0) -> dict:
  """{modality: int[L, per_layer]} disjoint neuron ids per layer, in MODALITY_DIMS order."""
  rng = np.random.default_rng([seed, 11])
  out = {m: np.zeros((layers, per_layer), np.int64) for m in MODALITY_DIMS}
  for l in range(layers):
    ids = rng.choice(width, size=len(MODALITY_DIMS) * per_layer, replace=False).reshape(len(MODALITY_DIMS), -1)
    for k, m in enumerate(MODALITY_DIMS):
      out[m][l] = np.sort(ids[k])
  return out


def planted_mask(names, layers: int, width: int, per_layer: int, seed: int = 0) -> np.ndarray:
  """bool[M, L, F]: the planted triples for modalities `names` (a subset of MODALITY_DIMS)."""
  idx = planted_indices(layers, width, per_layer, seed)
  mask = np.zeros((len(names), layers, width), bool)
  for i, name in enumerate(names):
    for l in range(layers):
      mask[i, l, idx[name][l]] = True
  return mask


def edit_state_fn(per_layer: int = 4, scale: float = 4.0, noise: float = 1.0, gain: float = 3.0, seed: int = 0):
  """-> edit_state(state, config, vocab) for `demo_qwen2_vl.build_demo_checkpoint`."""

  def edit(state, config, vocab):
    t = config["text_config"]
    d, f, n_layers = t["hidden_size"], t["intermediate_size"], t["num_hidden_layers"]
    rng = np.random.default_rng([seed, 5])
    k = len(MODALITY_DIMS)

    def code(n, dim):
      x = np.zeros((n, d), np.float32)
      x[:, k:] = noise * rng.standard_normal((n, d - k))
      x[:, dim] = scale
      return x

    emb = code(state["model.embed_tokens.weight"].shape[0], MODALITY_DIMS["text"])
    for tok in SPECIAL_TOKENS:
      emb[vocab[tok]] = code(1, MODALITY_DIMS["special"])[0]
    state["model.embed_tokens.weight"] = emb
    w2 = state["visual.merger.mlp.2.weight"]
    w2 = 0.5 * noise * rng.standard_normal(w2.shape).astype(np.float32) / np.sqrt(w2.shape[1])
    w2[:k] = 0.0
    state["visual.merger.mlp.2.weight"] = w2
    bias = np.zeros(d, np.float32)
    bias[MODALITY_DIMS["image"]] = scale
    state["visual.merger.mlp.2.bias"] = bias
    planted = planted_indices(n_layers, f, per_layer, seed)
    for l in range(n_layers):
      p = f"model.layers.{l}."
      state[p + "self_attn.o_proj.weight"] = np.zeros_like(state[p + "self_attn.o_proj.weight"])
      state[p + "mlp.down_proj.weight"] = np.zeros_like(state[p + "mlp.down_proj.weight"])
      state[p + "post_attention_layernorm.weight"] = np.ones(d, np.float32)
      gate = rng.standard_normal((f, d)).astype(np.float32) / np.sqrt(d)
      gate[:, :k] = 0.0
      for m, dim in MODALITY_DIMS.items():
        gate[planted[m][l]] = 0.0
        gate[planted[m][l], dim] = gain
      state[p + "mlp.gate_proj.weight"] = gate
    return state

  return edit
