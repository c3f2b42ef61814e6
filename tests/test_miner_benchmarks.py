"""MINER benchmarks: loaders on tiny fake on-disk copies of each format, the authors' prompts, media
reading, and the lenient / standard metrics against hand-checked cases and independent references."""
import collections
import csv
import json
import math
import os
import sys
import types
import wave
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from mmneuron_jax.data.metrics import asr_metrics as A, caption_metrics as C, miner_metrics as M
from mmneuron_jax.data.sources import media, miner_benchmarks as B


# ---------------------------------------------------------------- fake datasets

def _img(path):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.new("RGB", (8, 6), (120, 40, 40)).save(path)


def _json(path, obj):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(obj, f)


def _text(path, text):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write(text)


def _wav(path, samples, rate=16000, channels=1):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with wave.open(path, "wb") as w:
    w.setnchannels(channels)
    w.setsampwidth(2)
    w.setframerate(rate)
    w.writeframes(np.asarray(samples, "<i2").tobytes())


def _csv(path, rows):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", newline="") as f:
    csv.writer(f).writerows(rows)


TEN = ["stop"] * 7 + ["stop sign"] * 3


def make_text_vqa(root):
  base = os.path.join(root, "val")
  _img(os.path.join(base, "train_images", "abc.jpg"))
  _json(os.path.join(base, "TextVQA_0.5.1_val.json"), {"dataset_name": "textvqa", "data": [
      {"question": "what does the sign say?", "image_id": "abc", "question_id": 34602, "answers": TEN},
      {"question": "what brand?", "image_id": "nope", "question_id": 34603, "answers": ["x"] * 10},
      {"question": "no answers here", "image_id": "abc", "question_id": 34604}]})


def test_text_vqa_loader(tmp_path):
  make_text_vqa(str(tmp_path))
  recs = B.load_dataset("textvqa", str(tmp_path))
  assert [r.id for r in recs] == ["34602"] and recs.dataset == "text_vqa"
  r = recs[0]
  assert (r.modality, r.prompt, r.references) == ("image", "what does the sign say?", TEN)
  assert r.image_path == str(tmp_path / "val" / "train_images" / "abc.jpg") and r.audios == ()
  assert r.to_vqa_record().image_files() == [r.media_path]
  reasons = dict(recs.bad)
  assert len(recs.bad) == 2
  assert any("missing field(s) ['answers']" in v for v in reasons.values())
  assert any(v.startswith("image file not found:") and v.endswith("nope.jpg") for v in reasons.values())


def make_coco(root):
  for iid in (1, 2, 3):
    _img(os.path.join(root, "val2014", f"COCO_val2014_{iid:012d}.jpg"))
  _json(os.path.join(root, "annotations", "captions_val2014.json"), {
      "images": [{"id": 3, "file_name": "COCO_val2014_000000000003.jpg"},
                 {"id": 1, "file_name": "COCO_val2014_000000000001.jpg"},
                 {"id": 2, "file_name": "COCO_val2014_000000000002.jpg"}],
      "annotations": [{"image_id": 1, "id": 10, "caption": "A dog runs."},
                      {"image_id": 3, "id": 11, "caption": "A red bus.  "},
                      {"image_id": 1, "id": 12, "caption": "A brown dog running on grass."},
                      {"image_id": 2, "id": 13, "caption": "Not in the test split."}]})
  _text(os.path.join(root, "karparthy_split2014", "coco_test.txt"),
        "COCO_val2014_000000000001.jpg\nCOCO_val2014_000000000003.jpg\nCOCO_val2014_000000000009.jpg\n")


def test_coco_loader_authors_layout_and_karpathy_json(tmp_path):
  root = str(tmp_path / "a")
  make_coco(root)
  recs = B.load_dataset("coco_caption", root)
  assert [r.id for r in recs] == ["3", "1"]  # the captions file's image order
  assert recs[1].references == ["A dog runs.", "A brown dog running on grass."]  # annotation order
  assert recs[0].prompt == B.COCO_PROMPT and recs[0].media_path.endswith("COCO_val2014_000000000003.jpg")
  assert len(recs.bad) == 1 and "COCO_val2014_000000000009.jpg" in recs.bad[0][0]
  # Karpathy's dataset_coco.json alone
  root = str(tmp_path / "k")
  _img(os.path.join(root, "val2014", "COCO_val2014_000000000001.jpg"))
  _json(os.path.join(root, "dataset_coco.json"), {"images": [
      {"filepath": "val2014", "filename": "COCO_val2014_000000000001.jpg", "split": "test", "cocoid": 1,
       "sentences": [{"raw": "A dog runs."}, {"raw": "A dog."}]},
      {"filepath": "train2014", "filename": "COCO_train2014_000000000005.jpg", "split": "train", "cocoid": 5,
       "sentences": [{"raw": "x"}]},
      {"filepath": "val2014", "filename": "COCO_val2014_000000000007.jpg", "split": "test", "cocoid": 7,
       "sentences": []}]})
  recs = B.load_dataset("coco", root)
  assert [(r.id, r.references) for r in recs] == [("1", ["A dog runs.", "A dog."])] and len(recs.bad) == 1
  with pytest.raises(FileNotFoundError, match="captions_val2014.json"):
    B.load_dataset("coco", str(tmp_path))


# ---------------------------------------------------------------- MMLU

DEV = [[f"Dev question {i}?", f"a{i}", f"b{i}", f"c{i}", f"d{i}", "ABCD"[i % 4]] for i in range(6)]


def make_mmlu(root):
  _csv(os.path.join(root, "data", "dev", "abstract_algebra_dev.csv"), DEV)
  _csv(os.path.join(root, "data", "test", "abstract_algebra_test.csv"),
       [["Find x, if 2x = 4.", "1", "two", "3", "four", "B"], ["Bad row", "a", "b", "c", "d", "E"]])
  _csv(os.path.join(root, "data", "dev", "world_religions_dev.csv"), DEV[:5])
  _csv(os.path.join(root, "data", "test", "world_religions_test.csv"), [["Which?", "w", "x", "y", "z", "D"]])


def reference_prompt(subject, dev_rows, test_row, k):
  """Independent construction of the Hendrycks MMLU k-shot prompt."""
  lines = ["The following are multiple choice questions (with answers) about  " + subject.replace("_", " ") + ".", ""]
  for row in dev_rows[:k]:
    lines += [row[0]] + [f"{l}. {c}" for l, c in zip("ABCD", row[1:5])] + [f"Answer: {row[5]}", ""]
  lines += [test_row[0]] + [f"{l}. {c}" for l, c in zip("ABCD", test_row[1:5])] + ["Answer:"]
  return "\n".join(lines)


def test_mmlu_five_shot_prompt(tmp_path):
  make_mmlu(str(tmp_path))
  recs = B.load_dataset("mmlu", str(tmp_path))
  assert [r.id for r in recs] == ["abstract_algebra/0", "world_religions/0"]  # subjects sorted
  test_row = ["Find x, if 2x = 4.", "1", "two", "3", "four", "B"]
  assert recs[0].prompt == reference_prompt("abstract_algebra", DEV, test_row, 5)  # only the first 5 dev rows
  assert "about  abstract algebra.\n\n" in recs[0].prompt  # the harness's double space
  assert recs[0].references == ["B"] and recs[0].meta["k_shot"] == 5 and recs[0].modality == "text"
  assert recs[1].prompt == reference_prompt("world_religions", DEV, ["Which?", "w", "x", "y", "z", "D"], 5)
  assert len(recs.bad) == 1 and "row 1" in recs.bad[0][0] and "'E'" in recs.bad[0][1]
  # cropping: k falls until the prompt fits (the authors: GPT-2 BPE tokens <= 2048; here characters)
  limit = len(reference_prompt("abstract_algebra", DEV, test_row, 2))
  cropped = B.load_dataset("mmlu", str(tmp_path), count_tokens=len, max_tokens=limit)
  assert cropped[0].meta["k_shot"] == 2
  assert cropped[0].prompt == reference_prompt("abstract_algebra", DEV, test_row, 2)


def test_mmlu_pandas_parsing_quirk(tmp_path):
  root = str(tmp_path)
  _csv(os.path.join(root, "test", "x_test.csv"), [["Q?", "None", "1", "2.5", "b", "A"], ["R?", "c", "2", "3", "d", "B"]])
  _csv(os.path.join(root, "dev", "x_dev.csv"), [["D?", "p", "q", "r", "s", "C"]])
  faithful = B.load_dataset("mmlu", root)[0].prompt
  assert "\nA. nan\nB. 1\nC. 2.5\n" in faithful  # the authors' pd.read_csv: "None" -> nan
  raw = B.load_dataset("mmlu", root, raw_text=True)[0].prompt
  assert "\nA. None\nB. 1\nC. 2.5\n" in raw


# ---------------------------------------------------------------- MSVD-QA and video

def make_msvd(root):
  _json(os.path.join(root, "test_qa.json"), [
      {"answer": "dog", "id": 0, "question": "what is running?", "video_id": 1},
      {"answer": "man", "id": 1, "question": "who sings?", "video_id": 2},
      {"answer": "cat", "id": 2, "question": "what sleeps?", "video_id": 99}])
  _text(os.path.join(root, "youtube_mapping.txt"), "-4wsuPCjDBc_5_15 vid1\nabcdEFG_1_9 vid2\n")
  _text(os.path.join(root, "YouTubeClips", "-4wsuPCjDBc_5_15.avi"), "not really a video")


def test_msvd_loader_and_video(tmp_path, monkeypatch):
  make_msvd(str(tmp_path))
  recs = B.load_dataset("msvd", str(tmp_path))
  assert [r.id for r in recs] == ["0"]
  r = recs[0]
  assert r.prompt == "what is running?\nAnswer the question using a single word or phrase."
  assert (r.modality, r.references, r.meta["fps"], r.meta["max_pixels"]) == ("video", ["dog"], 1.0, 151200)
  reasons = [why for _, why in recs.bad]
  assert any("vid99 not in youtube_mapping.txt" in w for w in reasons)
  assert any(w.startswith("video file not found") and "abcdEFG_1_9.avi" in w for w in reasons)
  # no decoder installed -> a clear error naming the choices and the file
  real = media.importlib.util.find_spec
  monkeypatch.setattr(media.importlib.util, "find_spec",
                      lambda n, *a: None if n in media.VIDEO_BACKENDS else real(n, *a))
  with pytest.raises(ImportError, match="decord, av.*") as e:
    media.read_video_frames(r.media_path)
  assert r.media_path in str(e.value)
  # with a (fake) decord, frames come from the qwen_vl_utils indices
  calls = {}

  class Reader:
    def __init__(self, path):
      calls["path"] = path

    def __len__(self):
      return 75

    def get_avg_fps(self):
      return 25.0

    def get_batch(self, idx):
      calls["idx"] = idx
      return types.SimpleNamespace(asnumpy=lambda: np.zeros((len(idx), 2, 3, 3), np.uint8))

  monkeypatch.setitem(sys.modules, "decord", types.SimpleNamespace(VideoReader=Reader))
  monkeypatch.setattr(media.importlib.util, "find_spec", lambda n, *a: object() if n == "decord" else None)
  frames = media.read_video_frames(r.media_path)
  assert frames.shape == (4, 2, 3, 3) and calls == {"path": r.media_path, "idx": [0, 25, 49, 74]}


@pytest.mark.parametrize("total,fps,expected_n", [(75, 25.0, 4), (300, 30.0, 10), (331, 30.0, 12),
                                                  (30000, 30.0, 768), (5, 30.0, 4)])
def test_video_frame_indices(total, fps, expected_n):
  idx = media.video_frame_indices(total, fps, fps=1.0)
  assert len(idx) == expected_n and idx[0] == 0 and idx[-1] == total - 1
  np.testing.assert_array_equal(idx, np.round(np.linspace(0, total - 1, expected_n)).astype(int))


# ---------------------------------------------------------------- LibriSpeech and audio

def make_libri(root):
  chap = os.path.join(root, "LibriSpeech", "test-clean", "1089", "134686")
  _text(os.path.join(chap, "1089-134686.trans.txt"),
        "1089-134686-0000 HE HOPED THERE WOULD BE STEW FOR DINNER\n"
        "1089-134686-0001 STUFF IT INTO YOU HIS BELLY COUNSELLED HIM\n"
        "1089-134686-0002\n\n")
  _wav(os.path.join(chap, "1089-134686-0000.wav"), [0, 1000, -1000, 32767, -32768])
  os.makedirs(os.path.join(root, "LibriSpeech", "test-clean", "1089", "999999"))  # a chapter without transcript


def test_libri_loader_and_audio(tmp_path):
  make_libri(str(tmp_path))
  recs = B.load_dataset("librispeech", str(tmp_path))
  assert [r.id for r in recs] == ["1089-134686-0000"]
  r = recs[0]
  assert (r.prompt, r.references, r.modality) == (B.LIBRI_PROMPT, ["HE HOPED THERE WOULD BE STEW FOR DINNER"], "audio")
  np.testing.assert_allclose(r.audios[0], np.array([0, 1000, -1000, 32767, -32768]) / 32768.0, rtol=0, atol=1e-7)
  reasons = [why for _, why in recs.bad]
  assert len(reasons) == 3 and "no transcript text" in reasons
  assert any(w.startswith("no transcript file") for w in reasons)
  assert any(w.startswith("audio file not found") and w.endswith("1089-134686-0001.flac") for w in reasons)


def test_load_audio_stereo_resample_and_errors(tmp_path, monkeypatch):
  path = str(tmp_path / "s.wav")
  _wav(path, [1000, 3000] * 400, rate=8000, channels=2)  # 400 frames of L=1000, R=3000
  x = media.load_audio(path, sampling_rate=16000)
  assert x.dtype == np.float32 and x.shape == (800,)
  np.testing.assert_allclose(x[100:700], 2000 / 32768.0, rtol=1e-3)  # channels averaged, away from the edges
  assert media.load_audio(path, sampling_rate=8000).shape == (400,)
  with pytest.raises(media.MediaError, match="audio file not found: .*missing.wav"):
    media.load_audio(str(tmp_path / "missing.wav"))
  _text(str(tmp_path / "x.flac"), "not audio")
  real = media.importlib.util.find_spec
  monkeypatch.setattr(media.importlib.util, "find_spec", lambda n, *a: None if n == "soundfile" else real(n, *a))
  with pytest.raises(ImportError, match="x.flac needs the 'soundfile' package"):
    media.load_audio(str(tmp_path / "x.flac"))


# ---------------------------------------------------------------- VocalSound

def make_vocal(root):
  old = "/data/sls/scratch/yuangong/vocalsound2/data/vs_processed/data_16k/"
  for name in ("f0001_0_laughter.wav", "m0002_1_throatclearing.wav"):
    _wav(os.path.join(root, "audio_16k", name), [0, 5, -5])
  _json(os.path.join(root, "datafiles", "all.json"), {"data": [
      {"wav": old + "f0001_0_laughter.wav", "labels": "/m/01j3sz"},
      {"wav": old + "m0002_1_throatclearing.wav", "labels": "/m/0dl9sf8"},
      {"wav": old + "m0003_0_sneeze.wav", "labels": "/m/01hsr_"},
      {"wav": old + "f0004_0_hum.wav", "labels": "/m/xxxx"}]})


def test_vocal_sound_loader(tmp_path):
  root = str(tmp_path)
  make_vocal(root)
  recs = B.load_dataset("vocalsound", root)
  assert [(r.id, r.references) for r in recs] == [("f0001_0_laughter", ["Laughter"]),
                                                   ("m0002_1_throatclearing", ["Throat clearing"])]
  assert recs[0].prompt == B.VOCAL_PROMPT and recs[0].media_path == os.path.join(root, "audio_16k",
                                                                                 "f0001_0_laughter.wav")
  reasons = [why for _, why in recs.bad]
  assert any("unknown label '/m/xxxx'" in w for w in reasons)
  assert any(w.startswith("audio file not found") and "m0003_0_sneeze.wav" in w for w in reasons)
  _csv(os.path.join(root, "meta.csv"), [["filename", "label"], ["audio_16k/f0001_0_laughter.wav", "laughter"],
                                        ["audio_16k/m0002_1_throatclearing.wav", "throat_clearing"]])
  recs = B.load_dataset("vocal_sound", os.path.join(root, "meta.csv"))
  assert [r.references[0] for r in recs] == ["Laughter", "Throat clearing"] and not recs.bad


def test_prompts_are_the_authors_collapsed_strings():
  import re
  collapse = lambda s: re.sub(r"\s+", " ", s.replace("\n", "").strip())
  vocal = """You are a sound classification model. Your task is to classify a given audio sample into one of the following categories based on its content:
                      1. Laughter
                      2. Sigh
                      3. Cough
                      4. Throat clearing
                      5. Sneeze
                      6. Sniff
                      Please analyze the audio sample and provide the corresponding category name.
                      """
  assert B.VOCAL_PROMPT == collapse(vocal)
  coco = """
                           Generate a caption for the image in one short sentence, similar to these examples from the COCO dataset: 
                           1. A man with a red helmet on a small moped on a dirt road.
                           2. Man riding a motor bike on a dirt road on the countryside.
                           3. A man riding on the back of a motorcycle.
                           4. A man in a red shirt and a red hat is on a motorcycle on a hill side.
                           Now, describe the image.
                           """
  assert B.COCO_PROMPT == collapse(coco)


# ---------------------------------------------------------------- load_dataset

def test_load_dataset_subsets_and_errors(tmp_path):
  make_mmlu(str(tmp_path))
  _csv(os.path.join(tmp_path, "data", "test", "abstract_algebra_test.csv"),
       [[f"Q{i}?", "a", "b", "c", "d", "ABCD"[i % 4]] for i in range(12)])
  full = B.load_dataset("mmlu", str(tmp_path))
  ids = [r.id for r in full]
  assert len(full) == 13 and [r.id for r in B.load_dataset("mmlu", str(tmp_path), n=3, seed=None)] == ids[:3]
  sub = [r.id for r in B.load_dataset("mmlu", str(tmp_path), n=5, seed=1)]
  assert len(sub) == 5 and sub == [i for i in ids if i in sub]  # original order kept
  assert sub == [r.id for r in B.load_dataset("mmlu", str(tmp_path), n=5, seed=1)]
  assert sub != [r.id for r in B.load_dataset("mmlu", str(tmp_path), n=5, seed=2)]
  with pytest.raises(ValueError, match="unknown MINER benchmark 'gqa'"):
    B.load_dataset("gqa", str(tmp_path))
  with pytest.raises(FileNotFoundError, match="nowhere"):
    B.load_dataset("libri", str(tmp_path / "nowhere"))
  with pytest.raises(FileNotFoundError, match="TextVQA val json"):
    B.load_dataset("text_vqa", str(tmp_path))
  with pytest.raises(FileNotFoundError, match="test_qa.json"):
    B.load_dataset("msvd_qa", str(tmp_path))


# ---------------------------------------------------------------- authors' metrics

def rec(name, refs):
  return B.BenchRecord(id="0", dataset=name, modality="text", prompt="p", references=list(refs))


def test_authors_lenient_metrics_hand_cases():
  s = M.score("text_vqa", "The sign says STOP.", rec("text_vqa", TEN))
  assert s["correct"] == 1.0 and s["vqa_accuracy"] == 0.0  # containment vs the official exact match
  s = M.score("text_vqa", "stop", rec("text_vqa", TEN))
  assert s["correct"] == 1.0 and s["vqa_accuracy"] == 1.0 and s["primary"] == s["correct"]
  assert M.score("text_vqa", "go", rec("text_vqa", TEN))["primary"] == 0.0
  s = M.score("msvd_qa", "A dog.", rec("msvd_qa", ["dog"]))
  assert s["correct"] == 1.0 and s["exact_match"] == 1.0  # "a" and "." normalised away
  s = M.score("msvd_qa", "hotdog stand", rec("msvd_qa", ["dog"]))
  assert s["correct"] == 1.0 and s["exact_match"] == 0.0
  for pred, authors, standard in [("B", 1, 1), ("B. two", 1, 1), ("b", 0, 1), (" B", 0, 1),
                                  ("The answer is B", 0, 1), ("", 0, 0), ("Because", 1, 0), ("C", 0, 0)]:
    s = M.score("mmlu", pred, rec("mmlu", ["B"]))
    assert (s["correct"], s["letter_accuracy"]) == (authors, standard), pred
  for pred, authors, standard in [("Cough", 1, 1), ("cough", 0, 1), ("It is a Cough.", 1, 1),
                                  ("Sneeze, not a cough", 0, 0), ("Coughing", 1, 0)]:
    s = M.score("vocal_sound", pred, rec("vocal_sound", ["Cough"]))
    assert (s["correct"], s["accuracy"]) == (authors, standard), pred
  s = M.score("vocal_sound", "Sight", rec("vocal_sound", ["Sigh"]))
  assert (s["correct"], s["accuracy"]) == (1.0, 0.0)
  s = M.score("vocal_sound", "throat-clearing", rec("vocal_sound", ["Throat clearing"]))
  assert (s["correct"], s["accuracy"]) == (0.0, 1.0)
  with pytest.raises(ValueError, match="no references"):
    M.score("mmlu", "A", rec("mmlu", []))


# ---------------------------------------------------------------- WER

def ref_edit_distance(a, b):
  """Independent Levenshtein (full DP table in numpy)."""
  d = np.zeros((len(a) + 1, len(b) + 1), np.int64)
  d[:, 0], d[0, :] = np.arange(len(a) + 1), np.arange(len(b) + 1)
  for i in range(1, len(a) + 1):
    for j in range(1, len(b) + 1):
      d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + (a[i - 1] != b[j - 1]))
  return int(d[-1, -1])


def test_wer_authors_and_standard():
  ref = "HE HOPED THERE WOULD BE STEW FOR DINNER"
  assert A.authors_wer(ref, "he hoped there would be stew for dinner") == 0.0
  assert A.authors_wer(ref, "Sure! Here it is: he hoped there would be stew for dinner.") == 0.0  # prefix rule
  assert A.authors_wer(ref, "He hoped there would be stew for dinner.") == 0.0  # the reference is a substring
  assert A.authors_wer(ref, "He hoped, there would be stew for dinner") == pytest.approx(1 / 8)  # "hoped,"
  assert A.authors_wer("A B C D", "a x c") == pytest.approx(2 / 4)
  assert A.authors_wer("A B", "a b c d e") == 0.0  # "a b" is a substring of the generation
  assert A.authors_wer("A B", "c a d b e") == pytest.approx(3 / 2)  # three insertions: WRR < 0
  rng = np.random.default_rng(0)
  for _ in range(30):
    a = list(rng.choice(list("abcde"), rng.integers(1, 9)))
    b = list(rng.choice(list("abcde"), rng.integers(0, 9)))
    ours = A.authors_wer(" ".join(a), " ".join(b)) if " ".join(a) not in " ".join(b) else None
    if ours is not None:
      assert ours == pytest.approx(ref_edit_distance(a, b) / len(a))
  assert A.word_errors(ref, "He hoped, there would be stew for dinner") == (0, 8)
  s = M.score("libri", "He hoped, there would be stew for dinner", rec("libri", [ref]))
  assert s["wrr"] == pytest.approx(7 / 8) and s["wer_normalized"] == 0.0 and s["primary"] == s["wrr"]
  agg = M.aggregate("libri", [s, M.score("libri", "he hoped", rec("libri", [ref])),
                              M.score("libri", "Twenty-one men", rec("libri", ["TWENTY ONE MEN"]))])
  # normalised: "twenty-one men" and "TWENTY ONE MEN" both become "21 men"; the authors' WER counts 2 edits
  assert agg["n"] == 3 and agg["wer"] == pytest.approx((0 + 6 + 0) / (8 + 8 + 2))
  assert agg["wrr"] == pytest.approx((7 / 8 + 2 / 8 + 1 / 3) / 3) and agg["wrr_corpus"] == pytest.approx(1 - 6 / 18)


@pytest.mark.parametrize("raw,norm", [
    ("HE HOPED THERE WOULD BE STEW", "he hoped there would be stew"),
    ("Mr. Smith won't go, uh, [noise] (laughs) today!", "mister smith will not go today"),
    ("It's twenty one dollars.", "it is $21"), ("one hundred and five", "105"),
    ("two thousand three hundred", "2300"), ("nineteen eighty four", "1984"), ("Café déjà vu", "cafe deja vu"),
    ("the third colour", "the 3rd color"),
    ("1,000 people", "1000 people"), ("costs $5 or 3.5%", "costs $5 or 3.5%"), ("they're here", "they are here"),
])
def test_normalize_english(raw, norm):
  assert A.normalize_english(raw) == norm


# ---------------------------------------------------------------- captions: authors' BLEU and TF-IDF

def ref_sentence_bleu(ref, hyp):
  """Independent NLTK-style sentence BLEU-4 with method1, via Fractions."""
  if not hyp:
    return 0.0
  ps = []
  for n in range(1, 5):
    h = collections.Counter(zip(*[hyp[i:] for i in range(n)]))
    r = collections.Counter(zip(*[ref[i:] for i in range(n)]))
    num, den = sum((h & r).values()), max(1, sum(h.values()))
    ps.append((num, den))
  if ps[0][0] == 0:
    return 0.0
  logs = [math.log(Fraction(num, den)) if num else math.log(0.1 / den) for num, den in ps]
  bp = 1.0 if len(hyp) > len(ref) else math.exp(1 - len(ref) / len(hyp))
  return bp * math.exp(sum(logs) / 4)


def ref_tfidf(docs):
  """Independent sklearn-default TF-IDF cosine of the last doc with the others (dict maths)."""
  toks = [[w for w in __import__("re").findall(r"\b\w\w+\b", d.lower())] for d in docs]
  n, df = len(toks), collections.Counter(w for t in toks for w in set(t))
  vecs = []
  for t in toks:
    v = {w: c * (math.log((1 + n) / (1 + df[w])) + 1) for w, c in collections.Counter(t).items()}
    norm = math.sqrt(sum(x * x for x in v.values()))
    vecs.append({w: x / norm for w, x in v.items()} if norm else {})
  return [sum(x * vecs[-1].get(w, 0.0) for w, x in v.items()) for v in vecs[:-1]]


def test_authors_caption_scores():
  ref, hyp = "the cat is on the mat".split(), "the cat sat on the mat".split()
  # hand-checked: p1 5/6, p2 3/5, p3 1/4, p4 0/3 -> 0.1/3 (method1); equal lengths -> BP 1
  assert C.sentence_bleu(ref, hyp) == pytest.approx((5 / 6 * 3 / 5 * 1 / 4 * 0.1 / 3) ** 0.25)
  assert C.sentence_bleu(ref, ref) == pytest.approx(1.0)
  assert C.sentence_bleu(ref, []) == 0.0 and C.sentence_bleu(ref, ["dog"]) == 0.0
  assert C.sentence_bleu(ref, ["the", "cat"]) == pytest.approx(ref_sentence_bleu(ref, ["the", "cat"]))
  refs = ["A man riding a horse.", "A person on a brown horse in a field.", "Horse and rider on grass."]
  for hyp in ("A man rides a horse in a field.", "a dog", "Man on horse, man on horse, man on horse!", ""):
    got = C.authors_caption_scores(hyp, refs)
    bleu = [ref_sentence_bleu(r.split(), hyp.split()) for r in refs]
    tfidf = ref_tfidf(refs + [hyp])
    for name, vals in (("bleu", bleu), ("cider_tfidf", tfidf)):
      assert got[f"{name}_max"] == pytest.approx(max(vals), abs=1e-12)
      assert got[f"{name}_min"] == pytest.approx(min(vals), abs=1e-12)
      assert got[f"{name}_mean"] == pytest.approx(sum(vals) / len(vals), abs=1e-12)
  assert C.tfidf_cosine("A b", ["c d"]) == [0.0]  # no 2+ character words anywhere


# ---------------------------------------------------------------- captions: COCO corpus BLEU-4 and CIDEr-D

def ref_corpus_bleu4(hyps, refss):
  """Independent pycocoevalcap corpus BLEU-4."""
  corr, guess, tl, rl = np.zeros(4), np.zeros(4), 0, 0
  for h, refs in zip(hyps, refss):
    tl += len(h)
    rl += sorted(refs, key=lambda r: (abs(len(r) - len(h)), len(r)))[0].__len__()
    for n in range(1, 5):
      hc = collections.Counter(zip(*[h[i:] for i in range(n)]))
      mx = collections.Counter()
      for r in refs:
        mx |= collections.Counter(zip(*[r[i:] for i in range(n)]))
      corr[n - 1] += sum((hc & mx).values())
      guess[n - 1] += max(0, len(h) - n + 1)
  b = float(np.prod((corr + 1e-15) / (guess + 1e-9))) ** 0.25
  ratio = (tl + 1e-15) / (rl + 1e-9)  # guarded as in pycocoevalcap: equal lengths still give ratio < 1
  return b * (math.exp(1 - 1 / ratio) if ratio < 1 else 1.0)


def ref_cider_d(hyps, refss, sigma=6.0):
  """Independent CIDEr-D: per n a dense tf-idf matrix over a shared n-gram vocabulary."""
  scores = np.zeros(len(hyps))
  for n in range(1, 5):
    grams = lambda t: collections.Counter(zip(*[t[i:] for i in range(n)]))
    vocab = sorted({g for refs in refss for r in refs for g in grams(r)} | {g for h in hyps for g in grams(h)})
    col = {g: i for i, g in enumerate(vocab)}
    df = np.zeros(len(vocab))
    for refs in refss:
      for g in {g for r in refs for g in grams(r)}:
        df[col[g]] += 1
    idf = math.log(len(refss)) - np.log(np.maximum(df, 1.0))

    def vec(t):
      v = np.zeros(len(vocab))
      for g, c in grams(t).items():
        v[col[g]] = c
      return v * idf

    for i, (h, refs) in enumerate(zip(hyps, refss)):
      vh = vec(h)
      for r in refs:
        vr = vec(r)
        val = float(np.minimum(vh, vr) @ vr)
        if np.linalg.norm(vh) and np.linalg.norm(vr):
          val /= np.linalg.norm(vh) * np.linalg.norm(vr)
        penalty = math.exp(-((max(len(h) - 1, 0) - max(len(r) - 1, 0)) ** 2) / (2 * sigma ** 2))
        scores[i] += val * penalty / 4 / len(refs) * 10
  return scores


def test_coco_corpus_bleu_and_cider_d():
  hyps = ["A man rides a horse in a field.", "Two dogs play with a ball.", "A plate of food on a table."]
  refss = [["A man riding a horse.", "A person on a brown horse in a field."],
           ["Two dogs playing with a red ball on grass.", "Dogs chase a ball."],
           ["A plate with food on a wooden table.", "Food sits on a plate.", "A meal on a table."]]
  rows = [M.score("coco_caption", h, rec("coco_caption", r)) for h, r in zip(hyps, refss)]
  agg = M.aggregate("coco", rows)
  th = [C.ptb_tokens(h) for h in hyps]
  tr = [[C.ptb_tokens(r) for r in refs] for refs in refss]
  assert th[0] == ["a", "man", "rides", "a", "horse", "in", "a", "field"]
  assert agg["bleu4"] == pytest.approx(ref_corpus_bleu4(th, tr), rel=1e-12)
  assert agg["cider_d"] == pytest.approx(ref_cider_d(th, tr).mean(), rel=1e-12)
  np.testing.assert_allclose(C.cider_d(th, tr)[1], ref_cider_d(th, tr), rtol=1e-12)
  assert 0 < agg["bleu4"] < 1 and agg["cider_d"] > 0 and agg["n"] == 3
  assert agg["primary"] == pytest.approx(np.mean([r["bleu_max"] for r in rows]))
  # a caption equal to a reference in every image gives BLEU-4 = 1 (up to the tiny/small guards)
  assert C.corpus_bleu([r[0] for r in tr], tr)[3] == pytest.approx(1.0, abs=1e-6)
  assert C.ptb_tokens("It's a man's hat, isn't it? 2.5 t-shirts -- 'quoted'.") == \
      ["it", "'s", "a", "man", "'s", "hat", "is", "n't", "it", "2.5", "t-shirts", "quoted"]


def test_aggregate_means_and_empty():
  rows = [M.score("mmlu", p, rec("mmlu", ["A"])) for p in ("A", "B", "a", "A.")]
  agg = M.aggregate("mmlu", rows)
  assert agg == {"primary": 0.5, "correct": 0.5, "letter_accuracy": 0.75, "n": 4}
  assert math.isnan(M.aggregate("text_vqa", [])["primary"]) and M.aggregate("text_vqa", [])["n"] == 0
