"""A deterministic synthetic MINER demo set: image, video, text-only and audio datasets.

- `image_qa` (TextVQA-like): a question about a synthetic image from `data/synthetic/demo.py`; VQA accuracy.
- `caption` (COCO-like): "Describe the image briefly." with a caption built from the generator's
  facts; scored by ANLS (a string stand-in for CIDEr, which the benchmark metrics provide).
- `text_mc` (MMLU-like): a text-only arithmetic multiple-choice question; letter accuracy.
- `audio_qa` (VocalSound-like, for audio families): 1 s of 16 kHz tones; "high or low?" / "how many
  beeps?"; exact match.
- `video_qa` (MSVD-QA-like, for Qwen2-VL): 4 frames of 56 x 56 px (grid 2 x 4 x 4 -> 8 merged
  tokens) of a coloured square moving one way; "which way?" / "what colour?"; exact match.
Images are resized to `IMAGE_SIZE` so every batch has the same vision shapes. Sample i of a
dataset depends only on (seed, dataset, i).
"""
import io

import numpy as np

from mmneuron_jax.data.metrics import vqa_metrics as metrics
from mmneuron_jax.data.sources.miner_samples import MinerSample
from mmneuron_jax.data.synthetic import demo

IMAGE_SIZE = (84, 84)  # (h, w): 6x6 patches of 14 px -> 9 merged Qwen2-VL tokens
DATASETS = ("image_qa", "caption", "text_mc", "audio_qa", "video_qa")
PRIMARY = {"image_qa": "vqa_accuracy", "caption": "anls", "text_mc": "letter_accuracy", "audio_qa": "exact_match",
           "video_qa": "exact_match"}
SAMPLING_RATE = 16000
VIDEO_FRAMES, VIDEO_SIZE = 4, 56
VIDEO_META = {"fps": 1.0, "min_pixels": 28 * 28, "max_pixels": VIDEO_SIZE * VIDEO_SIZE}  # keeps 56 x 56
VIDEO_PROMPT = "Answer the question using a single word or phrase."
DIRECTIONS = {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0)}
COLOURS = {"red": (230, 40, 40), "green": (40, 200, 60), "blue": (40, 80, 230)}
CAPTION_PROMPT = "Describe the image briefly."
MC_SUFFIX = "Answer with the option's letter from the given choices directly."
_DOMAIN_CYCLE = ("common-scenes", "auto-driving", "remote-sensing", "documents", "medical")


def resized_png(image_bytes: bytes) -> bytes:
  """PNG bytes of an image resized to `IMAGE_SIZE` (bicubic, RGB)."""
  from PIL import Image
  with Image.open(io.BytesIO(image_bytes)) as im:
    small = im.convert("RGB").resize(IMAGE_SIZE[::-1], Image.BICUBIC)
  buf = io.BytesIO()
  small.save(buf, format="PNG")
  return buf.getvalue()


def caption_of(domain: str, facts: dict) -> str:
  """A short caption from a demo generator's facts."""
  if domain == "documents":
    return f"a document titled {facts['title'].lower()}"
  if domain == "auto-driving":
    return f"a road with {facts['cars']} cars"
  if domain == "remote-sensing":
    return "an aerial view of fields" + (" with a road" if facts["road"] else "")
  if domain == "medical":
    return f"a scan with {len(facts['lesions'])} bright lesions"
  return f"a room with {len(facts['objects'])} objects"


def _image_sample(name: str, i: int, seed: int) -> MinerSample:
  domain = _DOMAIN_CYCLE[i % len(_DOMAIN_CYCLE)]
  rec = demo.demo_sample(domain, i // len(_DOMAIN_CYCLE), seed + (0 if name == "image_qa" else 1000))
  image = resized_png(rec.image_bytes)
  if name == "caption":
    return MinerSample(id=f"caption-{i:04d}", dataset=name, prompt=CAPTION_PROMPT,
                       answers=(caption_of(domain, rec.meta["facts"]),), images=(image,), meta={"domain": domain})
  prompt = rec.question
  if rec.choices:
    prompt += "\n" + "\n".join(f"{'ABCD'[k]}. {c}" for k, c in enumerate(rec.choices)) + "\n" + MC_SUFFIX
  return MinerSample(id=f"image_qa-{i:04d}", dataset=name, prompt=prompt, answers=tuple(rec.answers),
                     images=(image,), choices=None if rec.choices is None else tuple(rec.choices),
                     meta={"domain": domain})


def _text_sample(i: int, seed: int) -> MinerSample:
  rng = np.random.default_rng([seed, 7, i])
  a, b = (int(v) for v in rng.integers(1, 10, 2))
  right = a + b
  wrong = [v for v in range(max(2, right - 4), right + 5) if v != right]
  options = [right] + [int(v) for v in rng.choice(wrong, size=3, replace=False)]
  options = [options[k] for k in rng.permutation(4)]
  letter = "ABCD"[options.index(right)]
  prompt = f"What is {a} plus {b}?\n" + "\n".join(f"{'ABCD'[k]}. {v}" for k, v in enumerate(options)) + \
      "\n" + MC_SUFFIX
  return MinerSample(id=f"text_mc-{i:04d}", dataset="text_mc", prompt=prompt, answers=(letter,),
                     choices=tuple(str(v) for v in options))


def beeps(rng, high: bool, beeps: int) -> np.ndarray:
  """float32[SAMPLING_RATE]: 1 s of `beeps` sine bursts at a low (220 Hz) or high (1760 Hz) pitch, plus a
  little noise (drawn from `rng`)."""
  t = np.arange(SAMPLING_RATE) / SAMPLING_RATE
  on = np.zeros_like(t)
  for k in range(beeps):
    start = (k + 0.1) / beeps
    on[(t >= start) & (t < start + 0.5 / beeps)] = 1.0
  wave = 0.5 * on * np.sin(2 * np.pi * (1760.0 if high else 220.0) * t) + 0.01 * rng.standard_normal(t.shape)
  return wave.astype(np.float32)


def _audio_sample(i: int, seed: int) -> MinerSample:
  """1 s of beeps (sine bursts) at a low (220 Hz) or high (1760 Hz) pitch, plus a little noise."""
  rng = np.random.default_rng([seed, 9, i])
  high, n_beeps = bool(rng.integers(2)), int(rng.integers(1, 4))
  wave = beeps(rng, high, n_beeps)
  if i % 2 == 0:
    prompt, answer = "Is the tone high or low?", "high" if high else "low"
  else:
    prompt, answer = "How many beeps are there?", str(n_beeps)
  return MinerSample(id=f"audio_qa-{i:04d}", dataset="audio_qa", prompt=prompt, answers=(answer,),
                     audios=(wave,), sampling_rate=SAMPLING_RATE)


def video_frames(rng) -> tuple:
  """A 16 px square of one colour moving 8 px per frame over dark noise -> (uint8[4, 56, 56, 3] frames,
  direction, colour), drawn from `rng`."""
  direction = list(DIRECTIONS)[int(rng.integers(len(DIRECTIONS)))]
  colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
  (dy, dx), side, step = DIRECTIONS[direction], 16, 8
  frames = rng.integers(0, 40, (VIDEO_FRAMES, VIDEO_SIZE, VIDEO_SIZE, 3)).astype(np.uint8)
  centre = (VIDEO_SIZE - side) // 2
  for f in range(VIDEO_FRAMES):
    offset = step * (2 * f - (VIDEO_FRAMES - 1)) // 2  # symmetric about the centre
    y, x = centre + dy * offset, centre + dx * offset
    frames[f, y:y + side, x:x + side] = COLOURS[colour]
  return frames, direction, colour


def _video_sample(i: int, seed: int) -> MinerSample:
  """A 16 px square of one colour moving 8 px per frame over dark noise: uint8[4, 56, 56, 3] frames."""
  frames, direction, colour = video_frames(np.random.default_rng([seed, 11, i]))
  question, answer = ("Which way does the square move?", direction) if i % 2 == 0 else \
      ("What colour is the square?", colour)
  return MinerSample(id=f"video_qa-{i:04d}", dataset="video_qa", prompt=f"{question}\n{VIDEO_PROMPT}",
                     answers=(answer,), videos=(frames,), meta=dict(VIDEO_META))


def demo_dataset(name: str, n: int, seed: int = 0) -> list:
  """The first `n` samples of demo dataset `name` (one of DATASETS)."""
  if name not in DATASETS:
    raise ValueError(f"unknown demo dataset {name!r}; demo datasets are {list(DATASETS)}")
  if name == "text_mc":
    return [_text_sample(i, seed) for i in range(n)]
  if name == "audio_qa":
    return [_audio_sample(i, seed) for i in range(n)]
  if name == "video_qa":
    return [_video_sample(i, seed) for i in range(n)]
  return [_image_sample(name, i, seed) for i in range(n)]


def score(name: str, prediction: str, sample) -> dict:
  """{metric: value in [0, 1], 'primary': the dataset's metric} for one prediction."""
  answers = list(sample.answers)
  out = {"exact_match": metrics.exact_match(prediction, answers)}
  primary = PRIMARY.get(name, "exact_match")
  out[primary] = metrics.METRICS[primary](prediction, answers)
  out["primary"] = out[primary]
  return out


def texts(samples) -> list:
  """Every prompt and answer (for a demo tokenizer's vocabulary), plus chat-template text."""
  out = ["Audio 1: 2: 3:"]
  for s in samples:
    out += [s.prompt, *s.answers, *(s.choices or ())]
  return out
