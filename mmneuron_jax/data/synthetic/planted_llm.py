"""Planted ground truth in the LLM: a tiny LLaVA-NeXT that answers "what colour is it ?" with the
image's hue through a known circuit, so the neurons whose removal destroys one domain's answers
are known by construction (for learned masks and layer probes).

On top of `planted.edit_state_fn` (hue-specific vision neurons, vision tower = normalised patch
embedding at every layer):
- projector: copies the three colour dims of the vision features to LLM dims 0..2 (GELU kept in
  its linear range by a +10 offset) and writes a constant 1 in dim 3; `image_newline` = 0.
- LLM layer 0 attention: q = 0 (uniform attention over the prefix); head 0 reads dims 0..2 and
  writes their average back into dims 0..2: the last position holds the mean colour of the image.
  Every other attention output is zero.
- LLM layer `llm_layer`: `per_domain` planted neurons per hue read the centred hue direction
  (gate and up) and write +1 into that hue's answer dim (4 + d); `lm_head` maps answer dim d to
  the hue's word. Other neurons have random gate/up and small random down projections that never
  touch dims 0..3 + answers. Token embeddings are zero on those reserved dims.
Removing hue d's planted neurons takes its answer away; the other hues keep theirs.
"""
import numpy as np

from mmneuron_jax.data.sources.records import VQARecord
from mmneuron_jax.data.synthetic import planted
from mmneuron_jax.data.synthetic.demo_llava_next import build_demo_checkpoint

QUESTION = "what colour is it ?"
TP = "language_model.model."


def planted_indices(num_domains: int, per_domain: int, width: int, seed: int = 0) -> np.ndarray:
  """int[D, per_domain] disjoint LLM neuron ids of each hue's planted neurons."""
  rng = np.random.default_rng(seed + 29)
  return rng.choice(width, size=num_domains * per_domain, replace=False).reshape(num_domains, per_domain)


def planted_mask(num_domains, layers, width, layer, per_domain, seed=0) -> np.ndarray:
  """bool[D, L, F]: hue d's planted LLM neurons."""
  mask = np.zeros((num_domains, layers, width), bool)
  for d, ids in enumerate(planted_indices(num_domains, per_domain, width, seed)):
    mask[d, layer, ids] = True
  return mask


def hue_directions(hues) -> np.ndarray:
  """float[D, 3] unit hue directions in CLIP-normalised colour space, grey axis removed."""
  colours = (np.array([planted.HUES[h] for h in hues]) - planted.CLIP_MEAN) / planted.CLIP_STD
  centred = colours - colours.mean(axis=1, keepdims=True)
  return centred / np.linalg.norm(centred, axis=1, keepdims=True)


def edit_state_fn(hues, llm_layer=2, per_domain=3, vision_layer=1, seed=0, gain=6.0, write=0.3,
                  answer_gain=1.2, noise=0.02):
  """-> edit_state(state, config, vocab) for `demo_llava_next.build_demo_checkpoint`. `vocab` must hold
  every hue word (pass them in the checkpoint's texts)."""
  vision_edit = planted.edit_state_fn(hues, layer=vision_layer, per_domain=per_domain, seed=seed)

  def edit(state, config, vocab):
    missing = [h for h in hues if h not in vocab]
    if missing:
      raise ValueError(f"planted_llm: hue words {missing} are not in the tokenizer vocabulary; add them to texts")
    vision_edit(state, config, vocab)
    t = config["text_config"]
    d, f, n_layers = t["hidden_size"], t["intermediate_size"], t["num_hidden_layers"]
    hd = d // t["num_attention_heads"]
    reserved = 4 + len(hues)
    if not 0 <= llm_layer < n_layers or reserved > d or len(hues) * per_domain > f:
      raise ValueError(f"planted_llm: config too small for {len(hues)} hues x {per_domain} neurons at layer {llm_layer}")
    rng = np.random.default_rng(seed + 101)
    vd = config["vision_config"]["hidden_size"]
    w1, b1 = np.zeros((d, vd), np.float32), np.zeros((d,), np.float32)
    w2, b2 = np.zeros((d, d), np.float32), np.zeros((d,), np.float32)
    for i in range(3):
      w1[i, i], b1[i], w2[i, i], b2[i] = 1.0, 10.0, 1.0, -10.0
    b2[3] = 1.0
    state["multi_modal_projector.linear_1.weight"], state["multi_modal_projector.linear_1.bias"] = w1, b1
    state["multi_modal_projector.linear_2.weight"], state["multi_modal_projector.linear_2.bias"] = w2, b2
    state["image_newline"] = np.zeros((d,), np.float32)
    emb = state[TP + "embed_tokens.weight"].copy()
    emb[:, :reserved] = 0.0
    state[TP + "embed_tokens.weight"] = emb
    directions = hue_directions(hues)
    planted_ids = planted_indices(len(hues), per_domain, f, seed)
    for i in range(n_layers):
      p = f"{TP}layers.{i}."
      o = np.zeros((d, d), np.float32)
      if i == 0:
        state[p + "self_attn.q_proj.weight"] = np.zeros_like(state[p + "self_attn.q_proj.weight"])
        v = np.zeros_like(state[p + "self_attn.v_proj.weight"])
        for c in range(3):
          v[c, c] = 1.0  # kv head 0 <- dims 0..2 (query heads 0, 1 share it)
          o[c, c] = 1.0  # residual dims 0..2 <- head 0
        state[p + "self_attn.v_proj.weight"] = v
      state[p + "self_attn.o_proj.weight"] = o
      for name in ("input_layernorm", "post_attention_layernorm"):
        state[p + f"{name}.weight"] = np.ones((d,), np.float32)
      down = (noise * rng.standard_normal((d, f))).astype(np.float32)
      down[:reserved] = 0.0
      if i == llm_layer:
        gate, up = state[p + "mlp.gate_proj.weight"].copy(), state[p + "mlp.up_proj.weight"].copy()
        for dom, ids in enumerate(planted_ids):
          gate[ids], up[ids], down[:, ids] = 0.0, 0.0, 0.0
          gate[ids, :3] = gain * directions[dom] / np.sqrt(d)
          up[ids, :3] = gain * directions[dom] / np.sqrt(d)
          down[4 + dom, ids] = write
        state[p + "mlp.gate_proj.weight"], state[p + "mlp.up_proj.weight"] = gate, up
      state[p + "mlp.down_proj.weight"] = down
    head = state["language_model.lm_head.weight"].copy()
    head[:, :reserved] = 0.0
    for dom, hue in enumerate(hues):
      head[vocab[hue]] = 0.0
      head[vocab[hue], 4 + dom] = answer_gain
    state["language_model.lm_head.weight"] = head
    state[TP + "norm.weight"] = np.ones((d,), np.float32)
    return state

  return edit


def hue_records(hues, n_per_hue: int, seed: int = 0) -> list:
  """n_per_hue records per hue (domain = hue, answer = the hue word), images of varied size."""
  rng = np.random.default_rng(seed + 1)
  out = []
  for i in range(n_per_hue):
    for h in hues:
      size = (int(rng.integers(20, 90)), int(rng.integers(20, 90)))
      out.append(VQARecord(id=f"{h}-{i}", domain=h, question=QUESTION, answers=[h],
                           image_bytes=planted.hue_image(h, size, seed * 1000 + i)))
  return out


def build(path: str, hues, seed: int = 0, **kwargs) -> str:
  """Write the planted checkpoint to `path` (vocabulary: the question and the hue words)."""
  return build_demo_checkpoint(path, [QUESTION] + list(hues), seed=seed,
                               edit_state=edit_state_fn(hues, seed=seed, **kwargs))
