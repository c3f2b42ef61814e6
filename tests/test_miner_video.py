"""MINER's video modality on Qwen2-VL without a video decoder: MSVD-QA records and the synthetic
demo videos become samples, frames are read through a monkeypatched `media.read_video_frames`,
and a mixed video / image / text batch from `miner_inputs` runs through the model with video
tokens in MINER's `video` modality."""
import dataclasses

import ml_collections
import numpy as np
import pytest

import mmneuron_jax
import test_miner_benchmarks as tb
from mmneuron_jax.analysis import miner
from mmneuron_jax.analysis.miner_probe import MinerScores, scores_from_output
from mmneuron_jax.data.sources import media, miner_benchmarks
from mmneuron_jax.data.sources.miner_samples import MinerSample, as_sample, validate, videos_of
from mmneuron_jax.data.synthetic import demo_qwen2_vl as demo_model_qwen2_vl, miner_demo
from mmneuron_jax.tasks.miner import data as miner_data, inputs as miner_inputs

TAKES = miner_inputs.spec_for("qwen2_vl").takes


def fake_frames(path, fps=1.0):
  """6 decoded 240 x 320 frames (what read_video_frames returns), their content set by the path."""
  rng = np.random.default_rng(len(path))
  return rng.integers(0, 256, (6, 240, 320, 3), dtype=np.uint8)


@pytest.fixture
def msvd_sample(tmp_path, monkeypatch):
  tb.make_msvd(str(tmp_path))
  records = miner_benchmarks.load_dataset("msvd_qa", str(tmp_path))
  monkeypatch.setattr(media, "read_video_frames", fake_frames)
  return as_sample(records[0], "msvd_qa")


def test_msvd_records_are_usable_video_samples(msvd_sample):
  s = msvd_sample
  assert s.modalities == ("video",) and s.meta["max_pixels"] == 360 * 420
  good, bad = validate([s], TAKES)
  assert [g.id for g in good] == [s.id] and not bad
  _, bad = validate([s], ("image",))  # a family without video still reports and skips it
  assert "video content" in bad[0][1]
  (frames,) = videos_of(s)  # qwen_vl_utils sizing: smart_resize(240, 320) within [128*28*28, 360*420]
  assert frames.shape == (6, 280, 392, 3) and frames.dtype == np.uint8


def test_bad_video_samples_are_reported():
  samples = [MinerSample(id="missing", dataset="d", prompt="q", videos=("/no/such/clip.avi",)),
             MinerSample(id="shape", dataset="d", prompt="q", videos=(np.zeros((4, 8, 8), np.uint8),)),
             MinerSample(id="markers", dataset="d", prompt="<video><video> q", videos=(np.zeros((2, 28, 28, 3),
                                                                                               np.uint8),))]
  _, bad = validate(samples, TAKES)
  reasons = dict(bad)
  assert "video file not found" in reasons["missing"] and "uint8[n>0, H, W, 3]" in reasons["shape"]
  assert "2 <video> markers but 1 videos" in reasons["markers"]


def test_demo_video_set_loads():
  config = ml_collections.ConfigDict(dict(data=dict(source="demo", datasets=["video_qa"], n_per_dataset=3, seed=0)))
  samples, bad, _ = miner_data.load(config, TAKES)
  assert len(samples["video_qa"]) == 3 and not bad["video_qa"]
  assert videos_of(samples["video_qa"][0])[0].shape == (4, 56, 56, 3)  # the demo's meta keeps 56 x 56


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
  samples = miner_demo.demo_dataset("video_qa", 2) + miner_demo.demo_dataset("image_qa", 1) + \
      miner_demo.demo_dataset("text_mc", 1)
  path = demo_model_qwen2_vl.build_demo_checkpoint(str(tmp_path_factory.mktemp("ckpt")), miner_demo.texts(samples))
  return miner_inputs.family_inputs("qwen2_vl", path), mmneuron_jax.load_hf(path), samples


def test_video_samples_flow_into_a_model_batch(demo, msvd_sample):
  inp, model, samples = demo
  video_id = inp.token_ids()["video"][0]
  assert inp.prompt(samples[0]).split("user\n")[1].startswith("<video>" + samples[0].prompt)
  mixed = [samples[0], samples[2], samples[3], dataclasses.replace(samples[1], images=samples[2].images)]
  batch = inp.batch(mixed)
  assert batch["video_grid_thw"].tolist() == [[2, 4, 4], [2, 4, 4]]
  assert (batch["input_ids"] == video_id).sum(1).tolist() == [8, 0, 0, 8]
  ids = {f"{m}_ids": inp.token_ids()[m] for m in ("special", "image", "video", "audio")}
  probe = MinerScores.from_batch(batch, **ids)
  out = model.apply(model.params, batch, capture=("vision",), probe={"llm": probe})
  assert np.isfinite(np.asarray(out.logits)).all()
  assert out.aux["vision"].shape[2] == batch["pixel_values"].shape[0] + batch["pixel_values_videos"].shape[0]
  present = np.asarray(probe.token_masks).any(-1)  # [B, M]
  video = miner.MODALITY_INDEX["video"]
  assert present[:, video].tolist() == [True, False, False, True]
  assert present[:, miner.MODALITY_INDEX["image"]].tolist() == [False, True, False, True]
  scores = np.asarray(scores_from_output(out))  # [B, 5, M, L, F]
  assert np.abs(scores[0, :, video]).max() > 0 and (scores[1, :, video] == 0).all()
  # a decoded MSVD clip (fake reader) through the same inputs: 6 frames 280 x 392 -> grid (3, 20, 28)
  clip = inp.batch([msvd_sample])
  assert clip["video_grid_thw"].tolist() == [[3, 20, 28]] and (clip["input_ids"] == video_id).sum() == 420


def test_answer_batch_with_video(demo):
  inp, _, samples = demo
  batch, mask = inp.answer_batch(samples[:2], ["right", "red"])
  for b, answer in enumerate(["right", "red"]):
    marked = inp.tokenizer.convert_ids_to_tokens(batch["input_ids"][b][mask[b]].tolist())
    assert marked == inp.tokenizer.tokenize(answer) + ["<|im_end|>"]
