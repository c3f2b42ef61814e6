"""Qwen2.5-VL parity with HF PyTorch on a tiny random config (fp32, eager attention).

The ViT has 3 blocks, block 1 with full attention and blocks 0, 2 with window attention over
2x2 merged tokens (window_size 56 px); its images and videos have grids whose merged sides are
not multiples of the window, so windows are partial. Row 0: text <image 8x6> text <video 2x4x6>
text; row 1: text <image 2x6> text <video 2x2x4> text (images and videos share rows and the
batch; HF runs the tower twice, images then videos). Videos carry second_per_grid_ts 4 and
1.25 s (tokens_per_second 2: temporal steps 8 and 2.5 -> truncated; row 0's video positions pass
its last token's, which moves the decode positions). Tolerances: logits and
neurons max-abs <= 1e-4 (observed ~1e-6); greedy tokens exactly equal.
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
import transformers

import hf_hooks
import mmneuron_jax
from mmneuron_jax.data.inputs import qwen2_5_vl as inputs
from mmneuron_jax.data.inputs import qwen2_vl as qwen2_vl_inputs
from mmneuron_jax.models import qwen2_5_vit
from mmneuron_jax.models.mllm import qwen2_5_vl
from mmneuron_jax.nn.logit_lens import Lens

TOL = 1e-4
IMAGE, VIDEO, START, END = 300, 301, 302, 303
PIXELS = dict(min_pixels=28 * 28, max_pixels=28 * 28 * 16)
IMAGE_SIZES = [(112, 84), (28, 84)]  # grids (h, w) in patches: 8x6, 2x6
VIDEO_SHAPES = [(4, 56, 84), (3, 28, 56)]  # (frames, h, w): grids (2, 4, 6) and (2, 2, 4)
SECONDS = [4.0, 1.25]


def tiny_config():
  text = dict(vocab_size=320, hidden_size=64, intermediate_size=88, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, rms_norm_eps=1e-5, max_position_embeddings=512,
              rope_parameters={"rope_type": "mrope", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
              bos_token_id=1, eos_token_id=2, pad_token_id=0)
  vision = dict(depth=3, hidden_size=32, intermediate_size=40, num_heads=4, out_hidden_size=64, patch_size=14,
                spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1],
                tokens_per_second=2, hidden_act="silu")
  return transformers.Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=IMAGE,
                                       video_token_id=VIDEO, vision_start_token_id=START, vision_end_token_id=END)


def build_hf(path, seed=0):
  torch.manual_seed(seed)
  config = tiny_config()
  config._attn_implementation = "eager"
  model = transformers.Qwen2_5_VLForConditionalGeneration(config).eval()
  with torch.no_grad():  # non-trivial norms and larger weights, so activations vary
    for name, p in model.named_parameters():
      if ("norm" in name or "ln_q" in name) and p.ndim == 1:
        p.add_(0.1 * torch.randn_like(p))
      elif p.ndim >= 2:
        p.mul_(3.0)
  model.save_pretrained(path)
  return model


def make_batch(config, padding_side="right", seed=0):
  from PIL import Image
  rng = np.random.default_rng(seed)
  images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in IMAGE_SIZES]
  videos = [rng.integers(0, 256, shape + (3,), dtype=np.uint8) for shape in VIDEO_SHAPES]
  pix = qwen2_vl_inputs.image_processor(**PIXELS)(images, return_tensors="np")
  vid = qwen2_vl_inputs.video_inputs(videos, **PIXELS)
  text = lambda n: list(rng.integers(3, 299, n))
  img, vd = [START, IMAGE, END], [START, VIDEO, END]
  rows = [[1] + text(3) + img + text(2) + vd + text(4), [1] + text(2) + img + text(2) + vd + text(3)]
  return inputs.build_batch(rows, pix["pixel_values"], pix["image_grid_thw"], config.to_dict(), padding_side,
                            pixel_values_videos=vid["pixel_values_videos"], video_grid_thw=vid["video_grid_thw"],
                            second_per_grid_ts=SECONDS)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("qwen2_5_vl"))
  hf = build_hf(path)
  return hf, mmneuron_jax.load_hf(path), make_batch(hf.config)


def act_modules(hf):
  return {"llm": [layer.mlp.act_fn for layer in hf.model.language_model.layers],
          "vision": [block.mlp.act_fn for block in hf.model.visual.blocks]}


def hf_order(batch, cfg):
  """Our patch order -> HF's (window order per tower call; images' call first, then videos')."""
  v = cfg.vision
  grids = [batch[k] for k in ("image_grid_thw", "video_grid_thw") if k in batch]
  orders, offset = [], 0
  for g in grids:
    orders.append(qwen2_5_vit.window_order(g, v.spatial_merge_size, v.merge_window) + offset)
    offset += int(np.asarray(g).prod(-1).sum())
  return np.concatenate(orders)


def run_hf(hf, batch, masks=None):
  """HF forward with recording (and masking) hooks -> (output, {'llm': [L, B, T, F], 'vision': [L, N, F]} in HF's
  window order; the tower's per-call records joined on the patch axis)."""
  modules = act_modules(hf)
  records = {name: [] for name in modules}
  handles = hf_hooks.neuron_hooks(modules, masks, records)
  try:
    with torch.no_grad():
      out = hf(**hf_hooks.torch_batch(batch))
  finally:
    hf_hooks.remove(handles)
  depth = len(modules["vision"])
  calls = [np.stack(records["vision"][i:i + depth]) for i in range(0, len(records["vision"]), depth)]
  return out, {"llm": np.stack(records["llm"]), "vision": np.concatenate(calls, axis=1) if calls else None}


def test_windows_are_partial_and_full_layers_interleaved(pair):
  _, model, batch = pair
  cfg = model.module.cfg
  assert cfg.vision.merge_window == 2 and cfg.vision.full_attention.tolist() == [False, True, False]
  windows = model.prepare(batch)["vision_windows"]
  # patches per window: image 8x6 -> 4x3 merged -> 2x2 windows, the right column partial; image 2x6 -> 1x3 -> 1x2;
  # video 2x4x6 -> per frame 2x3 -> 1x2; video 2x2x4 -> per frame 1x2 -> one window
  assert np.bincount(windows).tolist() == [16, 8, 16, 8] + [8, 4] + [16, 8] * 2 + [8] * 2


def test_window_order_matches_hf():
  from transformers.vision_utils import get_vision_window_index
  grid = np.array([[1, 8, 6], [2, 4, 6], [1, 2, 6], [1, 4, 4]])
  index, cu = get_vision_window_index(torch.tensor(grid), 2, 56, 14)
  ours = qwen2_5_vit.window_order(grid, 2, 2)
  np.testing.assert_array_equal(ours[::4] // 4, index.numpy())
  windows = qwen2_5_vit.patch_windows(grid, 2, 2)[ours]
  np.testing.assert_array_equal(np.flatnonzero(np.diff(windows)) + 1, cu.numpy()[1:-1])


def test_rope_index_matches_hf(pair):
  hf, model, _ = pair
  for side in ("right", "left"):
    b = make_batch(hf.config, side)
    prepared = model.prepare(b)
    ref, deltas = hf.model.get_rope_index(torch.tensor(b["input_ids"]), torch.tensor(b["mm_token_type_ids"]),
                                          torch.tensor(b["image_grid_thw"]), torch.tensor(b["video_grid_thw"]),
                                          torch.tensor(b["second_per_grid_ts"]),
                                          attention_mask=torch.tensor(b["attention_mask"]))
    np.testing.assert_array_equal(prepared["position_ids"], ref.numpy())
    np.testing.assert_array_equal(prepared["rope_deltas"], deltas.numpy()[:, 0])
  video = prepared["position_ids"][0, 0][b["input_ids"][0] == VIDEO]  # 2 temporal patches of 6 tokens, step 8
  assert video.tolist() == [video[0]] * 6 + [video[0] + 8] * 6
  video = prepared["position_ids"][0, 1][b["input_ids"][1] == VIDEO]  # step 2.5 -> int(2.5) = 2
  assert video.tolist() == [video[0]] * 2 + [video[0] + 2] * 2


def lens_of(batch):
  """A logit lens at the first 4 video tokens of each row, target token 7."""
  positions = np.stack([np.flatnonzero(row == VIDEO)[:4] for row in batch["input_ids"]]).astype(np.int32)
  return Lens(positions, np.full_like(positions, 7), top_k=5)


@pytest.fixture(scope="module")
def plain(pair):
  """Our unmasked forward (both modules captured, the lens read: one compilation) and HF's, with hooks."""
  hf, model, batch = pair
  return model.apply(model.params, batch, capture=("llm", "vision"), lens=lens_of(batch)), run_hf(hf, batch)


def test_logits_and_neurons_match(pair, plain):
  _, model, batch = pair
  out, (ref, rec) = plain
  valid = batch["attention_mask"].astype(bool)
  assert np.abs(np.asarray(out.logits)[valid] - ref.logits.numpy()[valid]).max() <= TOL
  llm = np.asarray(out.aux["llm"])
  assert llm.shape == (2,) + valid.shape + (88,)
  assert np.abs(llm[:, valid] - rec["llm"][:, valid]).max() <= TOL
  vision = np.asarray(out.aux["vision"])[:, 0]
  n = batch["pixel_values"].shape[0] + batch["pixel_values_videos"].shape[0]
  assert vision.shape == (3, n, 40) == rec["vision"].shape
  order = hf_order(batch, model.module.cfg)
  assert not np.array_equal(order, np.arange(n))  # the window order differs from the processor's
  assert np.abs(vision[:, order] - rec["vision"]).max() <= TOL


def test_masked_forward_matches_hook_zeroing(pair, plain):
  hf, model, batch = pair
  masks = hf_hooks.random_masks(model.probe_modules, rate=0.1)
  out = model.apply(model.params, batch, masks=masks)
  ref, _ = run_hf(hf, batch, masks=masks)
  valid = batch["attention_mask"].astype(bool)
  assert np.abs(np.asarray(out.logits)[valid] - ref.logits.numpy()[valid]).max() <= TOL
  assert np.abs(np.asarray(out.logits) - np.asarray(plain[0].logits))[valid].max() > 1e-3  # the mask did something


def test_logit_lens_matches_hf_hidden_states(pair, plain):
  """Lens readout of layer l at video-token positions = HF's lm_head(norm(hidden_states[l + 1]))
  (the last hidden state is normed already): entropy, top ids, a target's log-prob."""
  hf, model, batch = pair
  out, positions = plain[0], np.asarray(lens_of(batch).positions)
  ref, _ = hf_hooks.run_hf(hf, {}, batch, output_hidden_states=True)
  lm = hf.model.language_model
  n_layers = len(lm.layers)
  rows = np.arange(2)[:, None]
  for layer in range(n_layers):
    h = ref.hidden_states[layer + 1]
    with torch.no_grad():
      logits = hf.lm_head(h if layer == n_layers - 1 else lm.norm(h)).numpy()
    sel = logits[rows, positions].astype(np.float64)
    logp = sel - sel.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    assert np.abs(np.asarray(out.lens["entropy"][layer]) - (-(np.exp(logp) * logp).sum(-1))).max() <= TOL, layer
    np.testing.assert_array_equal(np.asarray(out.lens["top_ids"][layer]), np.argsort(-logp, -1, kind="stable")[..., :5])
    assert np.abs(np.asarray(out.lens["target_logprob"][layer]) - logp[..., 7]).max() <= TOL


def test_token_groups(pair):
  _, model, batch = pair
  groups = model.token_groups(batch, np.array([3, 5]))
  sizes = np.concatenate([batch["image_grid_thw"], batch["video_grid_thw"]]).prod(-1)
  np.testing.assert_array_equal(groups["vision"], np.repeat([3, 5, 3, 5], sizes)[None])
  media = model.token_groups(batch, np.array([3, 5]), media_only=True)["llm"] >= 0
  np.testing.assert_array_equal(media, np.isin(batch["input_ids"], [IMAGE, VIDEO]))


def test_greedy_generation_matches_hf(pair):
  """Left-padded image + video prompts, masked, KV cache; decode positions continue from the row's
  largest M-RoPE position (a video's temporal stream passes the last token's here)."""
  hf, model, _ = pair
  batch = make_batch(hf.config, "left")
  prepared = model.prepare(batch)["position_ids"]
  assert (prepared.max(axis=(0, 2)) > prepared[0, :, -1]).any()
  masks = hf_hooks.random_masks(model.probe_modules, seed=3)
  ours = model.generate(model.params, batch, max_new_tokens=6, masks=masks, eos_token_id=-1)
  ref = hf_hooks.generate(hf, act_modules(hf), batch, 6, masks, pad_token_id=0)
  np.testing.assert_array_equal(ours, ref[:, batch["input_ids"].shape[1]:])


def test_bad_config_and_inputs_raise(pair):
  from mmneuron_jax.convert.checks import UnsupportedConfigError
  hf, model, batch = pair
  config = tiny_config().to_dict()
  config["vision_config"]["window_size"] = 14
  with pytest.raises(UnsupportedConfigError, match="window_size"):
    qwen2_5_vl.Config.from_hf(config)
  with pytest.raises(ValueError, match="second_per_grid_ts"):
    model.prepare(dict(batch, second_per_grid_ts=np.ones(3, np.float32)))
  with pytest.raises(ValueError, match="video_grid_thw"):
    model.prepare({k: v for k, v in batch.items() if k != "video_grid_thw"})


def test_rope_index_refuses_spans_that_do_not_match_their_grids():
  """The M-RoPE walk Qwen2-VL and Qwen2.5-VL share refuses, naming the row, the span and the grid row:
  two adjacent images read as one span; more spans than grid rows. Qwen2-VL also refuses grid rows
  that no span uses."""
  import test_qwen2_vl_parity
  from mmneuron_jax.models.mllm import qwen2_vl
  cfg = qwen2_5_vl.Qwen25VLConfig.from_hf(tiny_config().to_dict())
  cfg2 = qwen2_vl.Qwen2VLConfig.from_hf(test_qwen2_vl_parity.tiny_config().to_dict())
  assert (cfg2.image_token_id, cfg2.vision_start_token_id, cfg2.vision_end_token_id) == (IMAGE, START, END)
  adjacent = np.array([[1, START] + [IMAGE] * 8 + [END]])  # two 1x4x4 images (4 tokens each), no tokens between
  for family, c in (("qwen2_5_vl", cfg), ("qwen2_vl", cfg2)):
    rope = qwen2_5_vl.rope_index if family == "qwen2_5_vl" else qwen2_vl.rope_index
    types = qwen2_vl.token_types(c, adjacent)
    with pytest.raises(ValueError, match=r"input_ids row 0: a image-token span of 8 tokens does not match "
                                         r"image_grid_thw\[0\]=\[1, 4, 4\] \(4 tokens\); adjacent images need tokens"):
      rope(c, adjacent, types, [[1, 4, 4], [1, 4, 4]], None)
    with pytest.raises(ValueError, match=r"more image-token spans than image_grid_thw has rows \(0\)"):
      rope(c, adjacent, types, None, None)
  one = np.array([[1, START] + [IMAGE] * 4 + [END]])
  with pytest.raises(ValueError, match=r"image_grid_thw has 2 images but input_ids holds 1 image-token spans"):
    qwen2_vl.rope_index(cfg2, one, qwen2_vl.token_types(cfg2, one), [[1, 4, 4], [1, 4, 4]], None)
