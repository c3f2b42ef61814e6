"""InstructBLIP parity with HF PyTorch on tiny random configs (fp32, eager attention).

Tolerances: logits and activations max-abs <= 1e-4; lens entropies <= 1e-4 nats; greedy tokens,
probe counts and top-k ids exactly equal. Parametrised over Q-Former cross_attention_frequency 1
and 2 (with 3 Q-Former layers, cross-attention on layers 0 and 2 only).
"""
import json
import os

import numpy as np
import pytest
import torch
import transformers

import hf_hooks
import hf_tiny  # noqa: F401  (sets HF_HUB_OFFLINE)
import mmneuron_jax
from mmneuron_jax.analysis.logit_lens import Lens, positions_where
from mmneuron_jax.convert.checks import UnsupportedConfigError
from mmneuron_jax.models.mllm.instructblip import InstructBlipConfig
from mmneuron_jax.nn.probes import GroupStats

TOL = 1e-4
IMAGE_TOKEN = 300
NUM_QUERY = 4
MODULES = ("llm", "vision", "qformer_query", "qformer_text")
VARIANTS = {
    # name: (cross_attention_frequency, vision layers, qformer layers, text layers, kv heads)
    "freq1_gqa": (1, 2, 2, 2, 2),
    "freq2_mha": (2, 3, 3, 3, 4),
}


def instructblip_config(freq, vision_layers, qformer_layers, text_layers, kv_heads):
  vision = transformers.InstructBlipVisionConfig(hidden_size=32, intermediate_size=52, num_hidden_layers=vision_layers,
                                                 num_attention_heads=4, image_size=28, patch_size=7)
  qformer = transformers.InstructBlipQFormerConfig(vocab_size=100, hidden_size=32, num_hidden_layers=qformer_layers,
                                                   num_attention_heads=4, intermediate_size=44,
                                                   max_position_embeddings=32, cross_attention_frequency=freq)
  text = transformers.LlamaConfig(vocab_size=320, hidden_size=64, intermediate_size=88, num_hidden_layers=text_layers,
                                  num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=512,
                                  rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=0)
  return transformers.InstructBlipConfig(vision_config=vision.to_dict(), qformer_config=qformer.to_dict(),
                                         text_config=text.to_dict(), num_query_tokens=NUM_QUERY,
                                         image_token_index=IMAGE_TOKEN)


def build_instructblip(path, variant, seed=0):
  """Save a random tiny InstructBLIP; vision / Q-Former weights re-drawn (HF inits them near 0)."""
  torch.manual_seed(seed)
  config = instructblip_config(*VARIANTS[variant])
  config._attn_implementation = "eager"
  model = transformers.InstructBlipForConditionalGeneration(config).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if name.startswith("language_model."):
        if "norm" in name:
          p.add_(0.1 * torch.randn_like(p))
      elif "norm" in name.lower():
        p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(p))
      else:
        p.copy_((0.1 if p.ndim > 1 else 0.05) * torch.randn_like(p))
    model.query_tokens.copy_(torch.randn_like(model.query_tokens))
  model.save_pretrained(path)
  return model


def make_batch(qformer_lens=(5, 9), text_lens=(6, 3), pad_side="right", seed=0):
  """Processor layout: input_ids = <image>*Q + [BOS, text] (text padded), Q-Former ids right-padded."""
  rng = np.random.default_rng(seed)
  qt = max(qformer_lens)
  qids, qmask = np.zeros((2, qt), np.int64), np.zeros((2, qt), np.int64)
  for i, n in enumerate(qformer_lens):
    qids[i, :n], qmask[i, :n] = rng.integers(1, 100, n), 1
  width = 1 + max(text_lens)
  ids, mask = np.zeros((2, NUM_QUERY + width), np.int64), np.zeros((2, NUM_QUERY + width), np.int64)
  for i, n in enumerate(text_lens):
    row = [1] + list(rng.integers(3, 299, n))
    start = NUM_QUERY if pad_side == "right" else NUM_QUERY + width - len(row)
    ids[i, :NUM_QUERY], mask[i, :NUM_QUERY] = IMAGE_TOKEN, 1
    ids[i, start:start + len(row)], mask[i, start:start + len(row)] = row, 1
  pixels = rng.standard_normal((2, 3, 28, 28)).astype(np.float32)
  return {"input_ids": ids, "attention_mask": mask, "pixel_values": pixels, "qformer_input_ids": qids,
          "qformer_attention_mask": qmask}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def pair(request, tmp_path_factory):
  path = str(tmp_path_factory.mktemp(request.param))
  hf = build_instructblip(path, request.param)
  return hf, mmneuron_jax.load_hf(path), make_batch(), path


def act_modules(hf):
  """HF modules whose forward output is each probe module's neuron activation, per layer."""
  return {
      "llm": [layer.mlp.act_fn for layer in hf.language_model.model.layers],
      "vision": [layer.mlp.activation_fn for layer in hf.vision_model.encoder.layers],
      "qformer_query": [layer.intermediate_query.intermediate_act_fn for layer in hf.qformer.encoder.layer],
      "qformer_text": [layer.intermediate.intermediate_act_fn for layer in hf.qformer.encoder.layer],
  }


def run_hf(hf, batch, masks=None, **kwargs):
  return hf_hooks.run_hf(hf, act_modules(hf), batch, masks, **kwargs)


def test_probe_modules(pair):
  hf, model, *_ = pair
  c = hf.config
  q = (c.qformer_config.num_hidden_layers, c.qformer_config.intermediate_size)
  assert model.probe_modules == {"llm": (c.text_config.num_hidden_layers, 88),
                                 "vision": (c.vision_config.num_hidden_layers, 52),
                                 "qformer_query": q, "qformer_text": q}


@pytest.fixture(scope="module")
def full(pair):
  """One forward with captures, probes and lens (one compile), and the HF reference."""
  hf, model, batch, _ = pair
  groups = model.token_groups(batch, np.array([0, 1]))
  positions = positions_where(batch["input_ids"] == IMAGE_TOKEN)
  out = model.apply(model.params, batch, capture=MODULES, probe={k: GroupStats(groups[k], 2) for k in MODULES},
                    lens=Lens(positions, None, top_k=3))
  ref, rec = run_hf(hf, batch, output_hidden_states=True)
  return out, ref, rec, groups, positions


def test_logits_match(pair, full):
  _, _, batch, _ = pair
  out, ref, *_ = full
  valid = batch["attention_mask"].astype(bool)
  assert out.logits.shape == ref.logits.shape
  assert np.abs(np.asarray(out.logits)[valid] - ref.logits.numpy()[valid]).max() <= TOL


def test_captured_activations_match(pair, full):
  _, _, batch, _ = pair
  out, _, rec, *_ = full
  ours = {k: np.asarray(v) for k, v in out.aux.items()}
  valid = batch["attention_mask"].astype(bool)
  assert np.abs(ours["llm"][:, valid] - rec["llm"][:, valid]).max() <= TOL
  for name in ("vision", "qformer_query"):
    assert ours[name].shape == rec[name].shape, name
    assert np.abs(ours[name] - rec[name]).max() <= TOL, name
  text = batch["qformer_attention_mask"].astype(bool)  # HF runs the text path on padding too; compare real tokens
  assert ours["qformer_text"].shape == rec["qformer_text"].shape
  assert np.abs(ours["qformer_text"][:, text] - rec["qformer_text"][:, text]).max() <= TOL


def test_probe_counts_skip_padding(pair, full):
  _, _, batch, _ = pair
  out, _, _, groups, _ = full
  assert groups["qformer_text"].shape == batch["qformer_input_ids"].shape
  assert groups["qformer_query"].shape == (2, NUM_QUERY)
  assert groups["vision"].shape == (2, 17)
  np.testing.assert_array_equal(groups["qformer_text"] >= 0, batch["qformer_attention_mask"].astype(bool))
  for name in MODULES:
    acts = np.asarray(out.aux[name])  # [L, B, T, F]
    for g in range(2):
      sel = groups[name] == g
      np.testing.assert_array_equal(np.asarray(out.probe[name]["count"])[:, g], (acts[:, sel] > 0).sum(1))
      np.testing.assert_array_equal(np.asarray(out.probe[name]["tokens"])[:, g], sel.sum())


def test_logit_lens_matches_hf_hidden_states(pair, full):
  hf, *_ = pair
  out, ref, _, _, positions = full
  lm = hf.language_model
  hs = ref.language_model_outputs.hidden_states  # embeddings, layers 1..L-1, final (normed)
  n = len(lm.model.layers)
  rows, cols = np.nonzero(positions >= 0)
  for layer in range(n):
    h = hs[layer + 1]
    with torch.no_grad():
      logits = lm.lm_head(h if layer == n - 1 else lm.model.norm(h)).numpy()[rows, positions[rows, cols]]
    logp = torch.log_softmax(torch.tensor(logits, dtype=torch.float64), -1).numpy()
    entropy = -(np.exp(logp) * logp).sum(-1)
    assert np.abs(np.asarray(out.lens["entropy"][layer])[rows, cols] - entropy).max() <= TOL, layer


def only(masks, name):
  """`masks` with every module but `name` all ones (same pytree: no recompile)."""
  return {k: v if k == name else np.ones_like(v) for k, v in masks.items()}


def test_masked_forward_matches_hook_zeroing(pair, full):
  hf, model, batch, _ = pair
  masks = hf_hooks.random_masks(model.probe_modules)
  out = model.apply(model.params, batch, masks=masks)
  ref, _ = run_hf(hf, batch, masks=masks)
  plain = np.asarray(full[0].logits)
  valid = batch["attention_mask"].astype(bool)
  assert np.abs(np.asarray(out.logits)[valid] - ref.logits.numpy()[valid]).max() <= TOL
  assert np.abs(np.asarray(out.logits) - plain)[valid].max() > 1e-3  # the mask did something
  for name in ("vision", "qformer_query", "qformer_text"):  # each module's mask alone matters, as in HF
    one = np.asarray(model.apply(model.params, batch, masks=only(masks, name)).logits)
    ref, _ = run_hf(hf, batch, masks={name: masks[name]})
    assert np.abs(one[valid] - ref.logits.numpy()[valid]).max() <= TOL, name
    assert np.abs(one - plain)[valid].max() > 1e-4, name


@pytest.mark.parametrize("masked", [False, True])
def test_greedy_generation_matches_hf(pair, masked):
  hf, model, _, _ = pair
  batch = make_batch(pad_side="left")
  masks = hf_hooks.random_masks(model.probe_modules, seed=3) if masked else None
  new = 8
  ours = model.generate(model.params, batch, max_new_tokens=new, masks=masks, eos_token_id=-1)
  ref = hf_hooks.generate(hf, act_modules(hf), batch, new, masks, pad_token_id=0)
  np.testing.assert_array_equal(ours, ref[:, -new:])


def test_lavis_qkv_bias_layout_loads_the_same(pair, tmp_path):
  """q_bias / v_bias (no k bias) give HF's fused cat(q_bias, 0, v_bias)."""
  from safetensors.numpy import load_file, save_file
  _, _, _, path = pair
  state = load_file(os.path.join(path, "model.safetensors"))
  fused, split = dict(state), dict(state)
  for k in [k for k in state if k.endswith("self_attn.qkv.bias")]:
    q, _, v = np.split(state[k], 3)
    fused[k] = np.concatenate([q, np.zeros_like(q), v])
    del split[k]
    split[k.replace("qkv.bias", "q_bias")], split[k.replace("qkv.bias", "v_bias")] = q, v
  params = []
  for name, tensors in (("fused", fused), ("split", split)):
    os.makedirs(tmp_path / name)
    save_file(tensors, str(tmp_path / name / "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(path, "config.json")) as f, open(tmp_path / name / "config.json", "w") as g:
      g.write(f.read())
    params.append(mmneuron_jax.load_hf(str(tmp_path / name)).params)
  a, b = (p["vision"]["layers"]["attn"]["qkv"]["bias"] for p in params)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_flan_t5_and_missing_image_token_are_rejected(pair, tmp_path):
  _, _, _, path = pair
  with open(os.path.join(path, "config.json")) as f:
    config = json.load(f)
  t5 = dict(config, text_config={"model_type": "t5", "d_model": 64}, use_decoder_only_language_model=False)
  with pytest.raises(UnsupportedConfigError, match="Flan-T5|flan-t5"):
    InstructBlipConfig.from_hf(t5)
  no_token = {k: v for k, v in config.items() if k != "image_token_index"}
  with pytest.raises(UnsupportedConfigError, match="image_token_index"):
    InstructBlipConfig.from_hf(no_token)


def test_bad_batches_get_clear_errors(pair):
  _, model, batch, _ = pair
  short = dict(batch, input_ids=np.where(batch["input_ids"] == IMAGE_TOKEN, 5, batch["input_ids"]))
  with pytest.raises(ValueError, match="image tokens"):
    model.prepare(short)
  with pytest.raises(ValueError, match="qformer_input_ids"):
    model.prepare({k: v for k, v in batch.items() if not k.startswith("qformer")})


def test_full_size_param_count_equals_hf():
  """Salesforce/instructblip-vicuna-7b shapes via jax.eval_shape == HF on the meta device."""
  from mmneuron_jax.models.shapes import abstract_params, count_params
  text = transformers.LlamaConfig(vocab_size=32001, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                                  num_attention_heads=32, rms_norm_eps=1e-6)
  config = transformers.InstructBlipConfig(text_config=text.to_dict(), num_query_tokens=32, image_token_index=32000)
  ours = count_params(abstract_params(config.to_dict()))
  with torch.device("meta"):
    hf = transformers.InstructBlipForConditionalGeneration(config)
  assert ours == sum(p.numel() for p in hf.parameters())
