"""MINER samples and inputs without a forward pass: record conversion, bad-sample reporting, the
Qwen2-VL chat prompt, the teacher-forced answer mask and the grad-score normalisation."""
import numpy as np
import pytest

from mmneuron_jax.data.sources.miner_samples import MinerSample, as_sample, validate
from mmneuron_jax.data.sources.records import VQARecord
from mmneuron_jax.data.synthetic import demo_qwen2_vl as demo_model_qwen2_vl, miner_demo
from mmneuron_jax.tasks.miner import inputs as miner_inputs, scores as miner_scores


def test_as_sample_reads_vqa_records_and_dicts():
  png = miner_demo.demo_dataset("image_qa", 1)[0].images[0]
  s = as_sample(VQARecord(id="r1", domain="d", question="What?", answers=["x"], image_bytes=png), "ds")
  assert (s.id, s.dataset, s.prompt, s.answers, s.modalities) == ("r1", "ds", "What?", ("x",), ("image",))
  d = as_sample({"id": 7, "prompt": "Hi", "answers": "yes", "audio": np.zeros(16, np.float32)}, "ds")
  assert (d.id, d.answers, d.modalities) == ("7", ("yes",), ("audio",))
  class Video:  # a benchmark record of a video dataset (BenchRecord-like)
    id, prompt, answers, modality, media_path = "v1", "What happens?", ["run"], "video", "clip.avi"
  v = as_sample(Video(), "msvd_qa")
  assert v.modalities == ("video",) and v.videos == ("clip.avi",)
  with pytest.raises(ValueError, match="no 'id'"):
    as_sample({"prompt": "x"}, "ds")


def test_bad_samples_are_reported_not_dropped_silently():
  good = miner_demo.demo_dataset("image_qa", 2)
  bad = [MinerSample(id="corrupt", dataset="d", prompt="q", images=(b"not a png",)),
         MinerSample(id="audio", dataset="d", prompt="q", audios=(np.zeros(8, np.float32),)),
         MinerSample(id="markers", dataset="d", prompt="<image> <image> q", images=good[0].images),
         MinerSample(id=good[0].id, dataset="d", prompt="duplicate"),
         MinerSample(id="video", dataset="d", prompt="q", videos=("clip.avi",))]
  kept, skipped = validate(good + bad, ("image",))
  assert [s.id for s in kept] == [s.id for s in good]
  reasons = dict(skipped)
  assert set(reasons) == {"corrupt", "audio", "markers", "video", good[0].id}
  assert "corrupt image" in reasons["corrupt"] and "does not take" in reasons["audio"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
  samples = miner_demo.demo_dataset("image_qa", 2) + miner_demo.demo_dataset("text_mc", 2)
  path = demo_model_qwen2_vl.build_demo_checkpoint(str(tmp_path_factory.mktemp("ckpt")), miner_demo.texts(samples))
  return miner_inputs.family_inputs("qwen2_vl", path), samples


def test_chat_prompt_and_token_ids(inputs):
  inp, samples = inputs
  assert inp.prompt(samples[0]) == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                                    f"<image>{samples[0].prompt}<|im_end|>\n<|im_start|>assistant\n")
  ids = inp.token_ids()
  ids_want = demo_model_qwen2_vl.IDS
  assert ids["special"] == tuple(ids_want[t] for t in ("<|im_start|>", "<|im_end|>", "<|vision_start|>",
                                                       "<|vision_end|>"))
  assert ids["image"] == (ids_want["<|image_pad|>"],) and ids["audio"] == ()
  batch = inp.batch(samples[:2])
  assert (batch["input_ids"] == ids["image"][0]).sum() == 2 * 9  # 84 x 84 px -> 9 merged tokens each


def test_answer_mask_marks_the_answer_tokens(inputs):
  inp, samples = inputs
  answers = ["a road with 3 cars", "B"]
  batch, mask = inp.answer_batch([samples[0], samples[2]], answers)
  for b, answer in enumerate(answers):
    marked = inp.tokenizer.convert_ids_to_tokens(batch["input_ids"][b][mask[b]].tolist())
    assert marked == inp.tokenizer.tokenize(answer) + ["<|im_end|>"]
  assert not mask[batch["attention_mask"] == 0].any()


def test_normalised_grad_is_minmax_of_minus_g():
  g = np.random.default_rng(0).standard_normal((3, 10)).astype(np.float32)
  g[2] = 0.5  # a flat layer -> zeros
  lo, hi = (-g).min(1, keepdims=True), (-g).max(1, keepdims=True)
  want = (-g - lo) / np.where(hi > lo, hi - lo, 1.0)
  want[2] = 0.0
  np.testing.assert_allclose(miner_scores.normalised_grad(g), want, rtol=1e-6, atol=1e-7)


def test_demo_checkpoint_matches_hf(inputs):
  """The numpy-written demo checkpoint is a genuine HF Qwen2-VL checkpoint: HF loads it and its fp32
  logits equal ours (max-abs <= 1e-4 at valid positions)."""
  import torch
  import transformers

  import mmneuron_jax
  inp, samples = inputs
  path = inp.processor.tokenizer.name_or_path
  hf = transformers.Qwen2VLForConditionalGeneration.from_pretrained(path, attn_implementation="eager").eval()
  model = mmneuron_jax.load_hf(path)
  batch = inp.batch(samples[:2])
  with torch.no_grad():
    ref = hf(**{k: torch.tensor(v) for k, v in batch.items()}).logits.numpy()
  ours = np.asarray(model.apply(model.params, batch).logits)
  valid = batch["attention_mask"].astype(bool)
  assert np.abs(ours - ref)[valid].max() <= 1e-4
