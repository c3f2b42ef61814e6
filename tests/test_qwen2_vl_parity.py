"""Qwen2-VL parity with HF PyTorch on tiny random configs (fp32, eager attention).

Three images of three grid sizes over two rows (one row holds two images, so text positions
continue after each image), GQA and MQA, untied and tied embeddings, right padding for the
forward pass and left padding for generation. Tolerances: logits and activations max-abs
<= 1e-4; greedy tokens exactly equal.
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
import transformers

import hf_hooks
import mmneuron_jax
from mmneuron_jax.data.inputs import qwen2_vl as qwen2_vl_inputs
from mmneuron_jax.models.mllm import qwen2_vl

TOL = 1e-4
IMAGE, VIDEO, START, END = 300, 301, 302, 303
IMAGE_SIZES = [(56, 56), (28, 84), (56, 28)]  # grids (h, w) in patches: 4x4, 2x6, 4x2
VARIANTS = {"gqa_untied": dict(kv_heads=2, tie=False), "mqa_tied": dict(kv_heads=1, tie=True)}
GENERATE_MASKED = {2: True, 1: False}  # by kv heads: generation is checked plain on one variant, masked on the other


def tiny_config(kv_heads=2, tie=False):
  text = dict(vocab_size=320, hidden_size=64, intermediate_size=88, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=kv_heads, rms_norm_eps=1e-5, max_position_embeddings=512,
              rope_parameters={"rope_type": "mrope", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
              tie_word_embeddings=tie, bos_token_id=1, eos_token_id=2, pad_token_id=0)
  vision = dict(depth=2, embed_dim=32, hidden_size=64, num_heads=4, mlp_ratio=3, patch_size=14,
                spatial_merge_size=2, temporal_patch_size=2, hidden_act="quick_gelu")
  return transformers.Qwen2VLConfig(text_config=text, vision_config=vision, image_token_id=IMAGE,
                                    video_token_id=VIDEO, vision_start_token_id=START, vision_end_token_id=END,
                                    tie_word_embeddings=tie)


def build_hf(path, seed=0, **kwargs):
  torch.manual_seed(seed)
  config = tiny_config(**kwargs)
  config._attn_implementation = "eager"
  model = transformers.Qwen2VLForConditionalGeneration(config).eval()
  with torch.no_grad():  # non-trivial norms and larger weights, so activations vary
    for name, p in model.named_parameters():
      if ("norm" in name or "ln_q" in name) and p.ndim == 1:
        p.add_(0.1 * torch.randn_like(p))
      elif p.ndim >= 2:
        p.mul_(3.0)
  model.save_pretrained(path)
  return model


def random_images(seed=0):
  from PIL import Image
  rng = np.random.default_rng(seed)
  return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in IMAGE_SIZES]


def make_batch(config, padding_side="right", seed=0):
  """Row 0: text <img 4x4> text <img 2x6> text; row 1: text <img 4x2> text (shorter: padded)."""
  proc = qwen2_vl_inputs.image_processor(min_pixels=28 * 28, max_pixels=28 * 28 * 16)
  pix = proc(random_images(seed), return_tensors="np")
  rng = np.random.default_rng(seed + 1)
  text = lambda n: list(rng.integers(3, 299, n))
  img = [START, IMAGE, END]
  rows = [[1] + text(3) + img + text(2) + img + text(4), [1] + text(2) + img + text(3)]
  return qwen2_vl_inputs.build_batch(rows, pix["pixel_values"], pix["image_grid_thw"], config.to_dict(),
                                     padding_side)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def pair(request, tmp_path_factory):
  path = str(tmp_path_factory.mktemp(request.param))
  hf = build_hf(path, **VARIANTS[request.param])
  model = mmneuron_jax.load_hf(path)
  return hf, model, make_batch(hf.config)


def act_modules(hf):
  """HF modules whose forward output is each probe module's neuron activation, per layer."""
  return {"llm": [layer.mlp.act_fn for layer in hf.model.language_model.layers],
          "vision": [block.mlp.act for block in hf.model.visual.blocks]}


def run_hf(hf, batch, masks=None):
  return hf_hooks.run_hf(hf, act_modules(hf), batch, masks)


def test_rope_index_matches_hf(pair):
  hf, model, batch = pair
  for side in ("right", "left"):
    b = make_batch(hf.config, side)
    ours = model.prepare(b)["position_ids"]
    ref, deltas = hf.model.get_rope_index(torch.tensor(b["input_ids"]), torch.tensor(b["mm_token_type_ids"]),
                                          torch.tensor(b["image_grid_thw"]),
                                          attention_mask=torch.tensor(b["attention_mask"]))
    np.testing.assert_array_equal(ours, ref.numpy())
    np.testing.assert_array_equal(model.prepare(b)["rope_deltas"], deltas.numpy()[:, 0])


@pytest.fixture(scope="module")
def plain(pair):
  """Our unmasked forward with both modules captured, and HF's forward with recording hooks."""
  hf, model, batch = pair
  return model.apply(model.params, batch, capture=("llm", "vision")), run_hf(hf, batch)


def test_logits_match(pair, plain):
  _, _, batch = pair
  out, (ref, _) = plain
  valid = batch["attention_mask"].astype(bool)
  assert out.logits.shape == ref.logits.shape
  assert np.abs(np.asarray(out.logits)[valid] - ref.logits.numpy()[valid]).max() <= TOL


def test_captured_activations_match(pair, plain):
  _, model, batch = pair
  out, (_, rec) = plain
  valid = batch["attention_mask"].astype(bool)
  llm = np.asarray(out.aux["llm"])
  assert llm.shape == (model.probe_modules["llm"][0],) + valid.shape + (model.probe_modules["llm"][1],)
  assert np.abs(llm[:, valid] - rec["llm"][:, valid]).max() <= TOL
  vision = np.asarray(out.aux["vision"])
  n = batch["pixel_values"].shape[0]
  assert vision.shape == (model.probe_modules["vision"][0], 1, n, model.probe_modules["vision"][1])
  assert np.abs(vision[:, 0] - rec["vision"]).max() <= TOL


def test_masked_forward_matches_hook_zeroing(pair, plain):
  hf, model, batch = pair
  masks = hf_hooks.random_masks(model.probe_modules)
  out = model.apply(model.params, batch, masks=masks)
  ref, _ = run_hf(hf, batch, masks=masks)
  valid = batch["attention_mask"].astype(bool)
  assert np.abs(np.asarray(out.logits)[valid] - ref.logits.numpy()[valid]).max() <= TOL
  unmasked = np.asarray(plain[0].logits)
  assert np.abs(np.asarray(out.logits) - unmasked)[valid].max() > 1e-3  # the mask did something


def test_token_groups(pair):
  hf, model, batch = pair
  groups = model.token_groups(batch, np.array([3, 5]))
  am = batch["attention_mask"].astype(bool)
  np.testing.assert_array_equal(groups["llm"], np.where(am, np.array([3, 5])[:, None], -1))
  grid = batch["image_grid_thw"]
  per_image = np.repeat([3, 3, 5], grid.prod(-1))
  np.testing.assert_array_equal(groups["vision"], per_image[None])
  image_only = model.token_groups(batch, np.array([3, 5]), media_only=True)["llm"]
  np.testing.assert_array_equal(image_only >= 0, batch["input_ids"] == IMAGE)


def test_greedy_generation_matches_hf(pair):
  """Left-padded prompts, KV cache, M-RoPE decode positions; masked on one variant, plain on
  the other (each generate signature compiles once, which dominates the test time)."""
  hf, model, _ = pair
  batch = make_batch(hf.config, "left")
  masked = GENERATE_MASKED[hf.config.text_config.num_key_value_heads]
  masks = hf_hooks.random_masks(model.probe_modules, seed=3) if masked else None
  new = 8
  ours = model.generate(model.params, batch, max_new_tokens=new, masks=masks, eos_token_id=-1)
  ref = hf_hooks.generate(hf, act_modules(hf), batch, new, masks, pad_token_id=0)
  np.testing.assert_array_equal(ours, ref[:, batch["input_ids"].shape[1]:])


# HF decoding settings, one per variant (each compiles generate once): Qwen2-VL-7B-Instruct's
# generation_config.json (sampling with top_k 1 = greedy on the penalised logits), and a stronger penalty.
HF_SETTINGS = {2: dict(do_sample=True, temperature=0.1, top_k=1, top_p=0.001, repetition_penalty=1.05),
               1: dict(do_sample=True, temperature=0.7, top_k=1, top_p=0.5, repetition_penalty=4.0)}


def rows_of(batch):
  """A left-padded batch -> one unpadded batch per row (with that row's images), as a batch-1 HF run."""
  per_image = batch["image_grid_thw"].prod(-1)
  first = np.concatenate([[0], np.cumsum(per_image)])
  out, image = [], 0
  for r in range(batch["input_ids"].shape[0]):
    keep = batch["attention_mask"][r].astype(bool)
    n = int((batch["input_ids"][r] == START).sum())
    row = {k: batch[k][r:r + 1, keep] for k in ("input_ids", "attention_mask", "mm_token_type_ids")}
    row.update(pixel_values=batch["pixel_values"][first[image]:first[image + n]],
               image_grid_thw=batch["image_grid_thw"][image:image + n])
    out.append(row)
    image += n
  return out


def test_hf_decoding_settings_generation_matches_hf(pair):
  """repetition_penalty / temperature / top_k / top_p as HF `generate` applies them; HF runs each row
  alone (batch 1, as the MINER authors did: no pad ids in the penalised set). top_k 1 makes the
  sampled token deterministic, so tokens must be equal."""
  hf, model, _ = pair
  batch = make_batch(hf.config, "left")
  settings = HF_SETTINGS[hf.config.text_config.num_key_value_heads]
  new = 10
  ours = model.generate(model.params, batch, max_new_tokens=new, eos_token_id=-1, **settings)
  plain = []
  for r, row in enumerate(rows_of(batch)):
    with torch.no_grad():
      ref = hf.generate(**hf_hooks.torch_batch(row), max_new_tokens=new, min_new_tokens=new, eos_token_id=None,
                        pad_token_id=0, **settings).numpy()[0, row["input_ids"].shape[1]:]
      plain.append(hf.generate(**hf_hooks.torch_batch(row), max_new_tokens=new, min_new_tokens=new, do_sample=False,
                               eos_token_id=None, pad_token_id=0).numpy()[0, row["input_ids"].shape[1]:])
    np.testing.assert_array_equal(ours[r], ref)
  if settings["repetition_penalty"] > 1.2:
    assert not np.array_equal(ours, np.stack(plain))  # the penalty changed some token


def test_text_only_forward_matches_hf(pair):
  hf, model, batch = pair
  text = {"input_ids": batch["input_ids"][:, :4], "attention_mask": np.ones((2, 4), np.int64)}
  out = model.apply(model.params, text)
  ref, _ = run_hf(hf, text)
  assert np.abs(np.asarray(out.logits) - ref.logits.numpy()).max() <= TOL


def test_bad_inputs_raise_clear_errors(pair):
  hf, model, batch = pair
  with pytest.raises(ValueError, match="image_grid_thw"):
    model.prepare({k: v for k, v in batch.items() if k != "image_grid_thw"})
  with pytest.raises(ValueError, match="pixel_values has shape"):
    model.prepare(dict(batch, pixel_values=batch["pixel_values"][:-4]))
  cut = dict(batch, image_grid_thw=batch["image_grid_thw"][:2])
  cut["pixel_values"] = batch["pixel_values"][:int(cut["image_grid_thw"].prod(-1).sum())]
  with pytest.raises(ValueError, match="image-token spans"):
    model.prepare(cut)


def test_unsupported_config_is_rejected():
  from mmneuron_jax.convert.checks import UnsupportedConfigError
  config = tiny_config().to_dict()
  config["text_config"]["use_sliding_window"] = True
  with pytest.raises(UnsupportedConfigError, match="use_sliding_window"):
    qwen2_vl.Qwen2VLConfig.from_hf(config)
  config = tiny_config().to_dict()
  config["vision_config"]["hidden_act"] = "swish_magic"
  with pytest.raises(UnsupportedConfigError, match="hidden_act"):
    qwen2_vl.Qwen2VLConfig.from_hf(config)


def hub_config():
  """The hub's flat config.json of Qwen2-VL-7B-Instruct: text fields at the top, rope_scaling 'mrope'."""
  return {"model_type": "qwen2_vl", "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
         "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064, "rms_norm_eps": 1e-6,
         "rope_theta": 1000000.0, "sliding_window": 32768, "use_sliding_window": False, "max_window_layers": 28,
         "tie_word_embeddings": False, "hidden_act": "silu", "image_token_id": 151655, "video_token_id": 151656,
         "vision_start_token_id": 151652, "vision_end_token_id": 151653,
         "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
         "vision_config": {"depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "num_heads": 16, "in_chans": 3,
                           "hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2,
                           "spatial_patch_size": 14, "temporal_patch_size": 2}}


def test_hub_layout_config_parses():
  cfg = qwen2_vl.Qwen2VLConfig.from_hf(hub_config())
  assert cfg.text.mrope_section == (16, 24, 24) and cfg.text.rope_theta == 1e6 and cfg.text.qkv_bias
  assert cfg.text.sliding_window is None and cfg.text.head_dim == 128
  assert cfg.probe_modules == {"llm": (28, 18944), "vision": (32, 5120)}


def test_probes_match_captured_activations(pair, plain):
  """In-scan GroupStats over the [1, N] vision layout and the [B, T] LLM layout equal the
  statistics of the captured activations."""
  from mmneuron_jax.nn.probes import GroupStats
  _, model, batch = pair
  groups = model.token_groups(batch, np.array([0, 1]))
  probe = {k: GroupStats(groups=g, num_groups=2) for k, g in groups.items()}
  out = model.apply(model.params, batch, probe=probe)
  captured, _ = plain
  for name in ("llm", "vision"):
    acts = np.asarray(captured.aux[name])  # [L, B, T, F] / [L, 1, N, F]
    for g in range(2):
      sel = groups[name] == g
      np.testing.assert_array_equal(np.asarray(out.probe[name]["count"])[:, g], (acts[:, sel] > 0).sum(1))
      np.testing.assert_allclose(np.asarray(out.probe[name]["sum"])[:, g], acts[:, sel].sum(1), atol=1e-4)
      assert (np.asarray(out.probe[name]["tokens"])[:, g] == sel.sum()).all()


def test_full_size_param_count_equals_hf():
  """jax.eval_shape of the Qwen2-VL-7B config gives HF's parameter count (no weights)."""
  import jax
  from mmneuron_jax.nn.policy import Policy
  hub = hub_config()
  cfg = qwen2_vl.Qwen2VLConfig.from_hf(hub)
  args, kwargs = qwen2_vl.init_inputs(cfg)
  module = qwen2_vl.Qwen2VL(cfg=cfg, policy=Policy())
  shapes = jax.eval_shape(lambda key: module.init(key, *args, **kwargs)["params"], jax.random.PRNGKey(0))
  ours = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(shapes))
  with torch.device("meta"):
    hf = transformers.Qwen2VLForConditionalGeneration(transformers.Qwen2VLConfig(**hub))
  assert ours == sum(p.numel() for p in hf.parameters())
  assert 8.0e9 < ours < 8.5e9


def test_in_memory_layout_loads_same_params(pair, tmp_path):
  """A checkpoint with transformers-v5 in-memory names ('model.language_model.*', 'model.visual.*';
  tied models also keep 'lm_head.weight') converts to the same params."""
  import json

  import jax
  from safetensors.torch import save_file
  hf, model, _ = pair
  state = {k: v.detach().clone().contiguous() for k, v in hf.state_dict().items()}
  assert any(k.startswith("model.language_model.") for k in state) and "lm_head.weight" in state
  save_file(state, str(tmp_path / "model.safetensors"))
  (tmp_path / "config.json").write_text(json.dumps(hf.config.to_dict()))
  other = mmneuron_jax.load_hf(str(tmp_path))
  same = jax.tree_util.tree_map(lambda a, b: bool((np.asarray(a) == np.asarray(b)).all()), model.params, other.params)
  assert all(jax.tree_util.tree_leaves(same))
