"""Qwen2-VL video inputs: parity with HF PyTorch on a tiny random config (fp32, eager attention).

Row 0 holds a 4-frame video (grid_t 2); row 1 an image, then a 3-frame video (padded to 4 frames
by repeating the last one), so both modalities share a row and a batch. HF gets our
`pixel_values_videos` / `video_grid_thw` / `mm_token_type_ids` directly: its video processor
(`Qwen2VLVideoProcessor`) needs torchvision, which is not installed here, so our numpy port
(`qwen2_vl_inputs.video_patches`) is checked against the PIL image processor instead (a frame
repeated twice is how HF processes an image). Tolerances as the image test: 1e-4 max-abs.
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

import hf_hooks
import mmneuron_jax
import test_qwen2_vl_parity as t
from mmneuron_jax.data.inputs import qwen2_vl as qwen2_vl_inputs
from mmneuron_jax.models import qwen2_vit
from mmneuron_jax.models.mllm import qwen2_vl

TOL = t.TOL
PIXELS = dict(min_pixels=28 * 28, max_pixels=28 * 28 * 16)
VIDEO_SHAPES = [(4, 56, 56), (3, 28, 56)]  # (frames, h, w): grids (2, 4, 4) and (2, 2, 4)


def random_videos(seed=0):
  rng = np.random.default_rng(seed)
  return [rng.integers(0, 256, shape + (3,), dtype=np.uint8) for shape in VIDEO_SHAPES]


def make_batch(config, padding_side="right", seed=0):
  """Row 0: text <video 2x4x4> text; row 1: text <image 4x2> text <video 2x2x4> text."""
  image = qwen2_vl_inputs.image_processor(**PIXELS)(t.random_images(seed)[2:], return_tensors="np")
  video = qwen2_vl_inputs.video_inputs(random_videos(seed), **PIXELS)
  rng = np.random.default_rng(seed + 1)
  text = lambda n: list(rng.integers(3, 299, n))
  img, vid = [t.START, t.IMAGE, t.END], [t.START, t.VIDEO, t.END]
  rows = [[1] + text(3) + vid + text(4), [1] + text(2) + img + text(2) + vid + text(3)]
  return qwen2_vl_inputs.build_batch(rows, image["pixel_values"], image["image_grid_thw"], config.to_dict(),
                                     padding_side, pixel_values_videos=video["pixel_values_videos"],
                                     video_grid_thw=video["video_grid_thw"])


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("video"))
  hf = t.build_hf(path, kv_heads=2, tie=False)
  return hf, mmneuron_jax.load_hf(path), make_batch(hf.config)


def run_hf(hf, batch):
  """HF forward with recording hooks; the vision tower runs twice (images, then videos), so its
  per-call records are joined on the patch axis -> (output, {'llm': [L, B, T, F], 'vision': [L, N, F]})."""
  modules = t.act_modules(hf)
  records = {name: [] for name in modules}
  handles = hf_hooks.neuron_hooks(modules, None, records)
  try:
    with torch.no_grad():
      out = hf(**hf_hooks.torch_batch(batch))
  finally:
    hf_hooks.remove(handles)
  depth = len(modules["vision"])
  calls = [np.stack(records["vision"][i:i + depth]) for i in range(0, len(records["vision"]), depth)]
  return out, {"llm": np.stack(records["llm"]), "vision": np.concatenate(calls, axis=1)}


def test_batch_layout(pair):
  _, _, batch = pair
  np.testing.assert_array_equal(batch["video_grid_thw"], [[2, 4, 4], [2, 2, 4]])
  assert (batch["input_ids"] == t.VIDEO).sum(1).tolist() == [8, 4]
  assert (batch["mm_token_type_ids"] == 2).sum() == 12 and (batch["mm_token_type_ids"] == 1).sum() == 2


def test_rope_index_matches_hf(pair):
  hf, model, _ = pair
  for side in ("right", "left"):
    b = make_batch(hf.config, side)
    prepared = model.prepare(b)
    ref, deltas = hf.model.get_rope_index(torch.tensor(b["input_ids"]), torch.tensor(b["mm_token_type_ids"]),
                                          torch.tensor(b["image_grid_thw"]), torch.tensor(b["video_grid_thw"]),
                                          attention_mask=torch.tensor(b["attention_mask"]))
    np.testing.assert_array_equal(prepared["position_ids"], ref.numpy())
    np.testing.assert_array_equal(prepared["rope_deltas"], deltas.numpy()[:, 0])
    np.testing.assert_array_equal(prepared["image_rows"], [1, 0, 1])  # the image, then the two videos


@pytest.fixture(scope="module")
def plain(pair):
  hf, model, batch = pair
  return model.apply(model.params, batch, capture=("llm", "vision")), run_hf(hf, batch)


def test_logits_and_neurons_match(pair, plain):
  _, _, batch = pair
  out, (ref, rec) = plain
  valid = batch["attention_mask"].astype(bool)
  assert np.abs(np.asarray(out.logits)[valid] - ref.logits.numpy()[valid]).max() <= TOL
  assert np.abs(np.asarray(out.aux["llm"])[:, valid] - rec["llm"][:, valid]).max() <= TOL
  vision = np.asarray(out.aux["vision"])[:, 0]
  n = batch["pixel_values"].shape[0] + batch["pixel_values_videos"].shape[0]
  assert vision.shape[1] == n == rec["vision"].shape[1]
  assert np.abs(vision - rec["vision"]).max() <= TOL


def test_token_groups_cover_videos(pair):
  _, model, batch = pair
  groups = model.token_groups(batch, np.array([3, 5]))
  sizes = np.concatenate([batch["image_grid_thw"], batch["video_grid_thw"]]).prod(-1)
  np.testing.assert_array_equal(groups["vision"], np.repeat([5, 3, 5], sizes)[None])
  media = model.token_groups(batch, np.array([3, 5]), media_only=True)["llm"] >= 0
  np.testing.assert_array_equal(media, np.isin(batch["input_ids"], [t.IMAGE, t.VIDEO]))


def test_greedy_generation_matches_hf(pair):
  hf, model, _ = pair
  batch = make_batch(hf.config, "left")
  ours = model.generate(model.params, batch, max_new_tokens=4, eos_token_id=-1)
  ref = hf_hooks.generate(hf, t.act_modules(hf), batch, 4, pad_token_id=0)
  np.testing.assert_array_equal(ours, ref[:, batch["input_ids"].shape[1]:])


def test_video_only_batch_and_bad_inputs(pair):
  hf, model, batch = pair
  row = {k: batch[k][:1, :int(batch["attention_mask"][0].sum())] for k in ("input_ids", "attention_mask",
                                                                          "mm_token_type_ids")}
  first = int(batch["video_grid_thw"][0].prod())
  row.update(pixel_values_videos=batch["pixel_values_videos"][:first], video_grid_thw=batch["video_grid_thw"][:1])
  ours = np.asarray(model.apply(model.params, row).logits)
  ref, _ = run_hf(hf, row)
  assert np.abs(ours - ref.logits.numpy()).max() <= TOL
  with pytest.raises(ValueError, match="video_grid_thw"):
    model.prepare({k: v for k, v in batch.items() if k != "video_grid_thw"})
  with pytest.raises(ValueError, match="pixel_values_videos has shape"):
    model.prepare(dict(batch, pixel_values_videos=batch["pixel_values_videos"][:-4]))


def test_frame_pair_equals_image_processor():
  """A frame repeated temporal_patch_size times gives the PIL image processor's patches exactly
  (same resize, rescale, normalisation and patch order), here with a resize (50x70 -> 56x56)."""
  from PIL import Image
  frame = np.random.default_rng(3).integers(0, 256, (50, 70, 3), dtype=np.uint8)
  ref = qwen2_vl_inputs.image_processor(**PIXELS)([Image.fromarray(frame)], return_tensors="np")
  ours, grid = qwen2_vl_inputs.video_patches(np.stack([frame, frame]), **PIXELS)
  np.testing.assert_array_equal(grid, ref["image_grid_thw"][0])
  np.testing.assert_array_equal(ours, ref["pixel_values"])
  odd, _ = qwen2_vl_inputs.video_patches(frame[None], **PIXELS)  # one frame: padded by repeating it
  np.testing.assert_array_equal(odd, ours)


def test_video_patch_order_by_hand():
  """Patch k of temporal slice i is frames 2i, 2i+1 at the k-th patch in merge-block order."""
  frames = random_videos(1)[0]  # 4 x 56 x 56: no resize
  ours, grid = qwen2_vl_inputs.video_patches(frames, **PIXELS)
  x = ((frames.astype(np.float64) / 255).astype(np.float32) - np.float32(qwen2_vl_inputs.CLIP_MEAN)) / \
      np.float32(qwen2_vl_inputs.CLIP_STD)
  positions = qwen2_vit.patch_positions(grid[None], 2)
  for k, (r, c) in enumerate(positions):
    i = k // 16
    patch = x[2 * i:2 * i + 2, 14 * r:14 * r + 14, 14 * c:14 * c + 14]  # [Tp, p, p, C]
    np.testing.assert_allclose(ours[k], patch.transpose(3, 0, 1, 2).reshape(-1), rtol=0, atol=1e-6)


def test_video_token_expansion():
  cfg = t.tiny_config().to_dict()
  batch = qwen2_vl_inputs.build_batch([[1, t.START, t.VIDEO, t.END, 5]], None, [], cfg,
                                      pixel_values_videos=np.zeros((24, 1176)), video_grid_thw=[[2, 2, 6]])
  assert batch["input_ids"][0].tolist() == [1, t.START] + [t.VIDEO] * 6 + [t.END, 5]
  assert "pixel_values" not in batch and batch["video_grid_thw"].tolist() == [[2, 2, 6]]


def test_rope_index_video_positions():
  """Temporal positions step per temporal patch; text after a video continues at max(h, w) / merge."""
  cfg = qwen2_vl.Qwen2VLConfig.from_hf(t.tiny_config().to_dict())
  ids = np.array([[1, t.START] + [t.VIDEO] * 8 + [t.END]])
  pos, delta, rows = qwen2_vl.rope_index(cfg, ids, qwen2_vl.token_types(cfg, ids), None, [[2, 4, 4]])
  assert pos[0, 0, 2:10].tolist() == [2, 2, 2, 2, 3, 3, 3, 3]
  assert pos[:, 0, 10].tolist() == [4, 4, 4] and delta.tolist() == [5 - 11] and rows[qwen2_vl.VIDEO].tolist() == [0]
