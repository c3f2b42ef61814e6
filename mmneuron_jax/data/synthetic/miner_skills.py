"""A learnable synthetic MINER set: every answer follows from the media (or, for `text_mc`, from the
words), with disjoint 'train' and 'val' splits; the trained Qwen2-VL / Qwen2-Audio demos answer it.

The datasets keep the demo set's names, prompts and metrics (`miner_demo.PRIMARY`, `miner_demo.score`),
so the MINER pipeline takes them unchanged (`data.source='skills'`, `data.split`):

- `image_qa`: the five-domain skills images (`data/synthetic/skills.py`: glyph, lesion count, car colour,
  land cover, object colour / shape) at `miner_demo.IMAGE_SIZE`; VQA accuracy.
- `caption`: "Describe the image briefly." over the same images, a caption built from the drawn facts
  ("a red ball on a table"); ANLS.
- `text_mc`: "Which of these is a fruit?" with one option from each of four word categories; letter
  accuracy. A 'val' question's option tuple never occurs in 'train' (split by a hash of the tuple).
- `audio_qa`: 1 s of synthesised sound at 16 kHz: which sound it is (`SOUNDS`), how many beeps, or
  whether a tone is high or low; exact match.
- `video_qa`: 4 frames of a coloured square moving one way (`miner_demo.video_frames`); exact match.

Sample i of (dataset, split) depends only on (seed, dataset, split, i); prefixes of larger sets are
equal. Nothing is downloaded: numpy and PIL only.
"""
import hashlib

import numpy as np

from mmneuron_jax.data.sources.miner_samples import MinerSample
from mmneuron_jax.data.synthetic import miner_demo, skills

SPLITS = ("train", "val")
DATASETS = miner_demo.DATASETS
SAMPLING_RATE = miner_demo.SAMPLING_RATE
CATEGORIES = {"an animal": ("cat", "dog", "horse", "cow", "sheep", "goat", "mouse", "bear"),
              "a fruit": ("apple", "pear", "plum", "grape", "lemon", "peach", "mango", "cherry"),
              "a tool": ("hammer", "saw", "drill", "wrench", "spade", "chisel", "axe", "shovel"),
              "a vehicle": ("car", "bus", "train", "boat", "truck", "plane", "bike", "tram")}
SOUNDS = ("beep", "chirp", "siren", "hum", "hiss")
_CODES = {name: k for k, name in enumerate(DATASETS)}
_IMAGE_DOMAINS = ("common-scenes", "auto-driving", "remote-sensing", "documents", "medical")


def _rng(seed: int, name: str, split: str, i: int, extra: int = 0):
  if split not in SPLITS:
    raise ValueError(f"split={split!r}; expected one of {SPLITS}")
  return np.random.default_rng([seed, 500 + _CODES[name], 1000 + SPLITS.index(split), i, extra])


def caption_of(domain: str, facts: dict) -> str:
  """A short caption of a skills image from its drawn facts."""
  if domain == "common-scenes":
    return f"a {facts['color']} {facts['shape']} on a table"
  if domain == "auto-driving":
    return f"a {facts['car']} car on a road"
  if domain == "remote-sensing":
    return f"an aerial view of {facts['land']}"
  if domain == "documents":
    return f"a page with the letter {facts['glyph']}"
  return f"a scan with {facts['lesions']} lesions"


def _image_sample(name: str, i: int, split: str, seed: int) -> MinerSample:
  domain = _IMAGE_DOMAINS[i % len(_IMAGE_DOMAINS)]
  # Caption images are other draws than the image_qa ones (their own seed stream).
  rec = skills.skills_sample(domain, i // len(_IMAGE_DOMAINS), split, seed + (0 if name == "image_qa" else 1000))
  image = miner_demo.resized_png(rec.image_bytes)
  sid = f"{name}-{split}-{i:04d}"
  if name == "caption":
    return MinerSample(id=sid, dataset=name, prompt=miner_demo.CAPTION_PROMPT,
                       answers=(caption_of(domain, rec.meta["facts"]),), images=(image,),
                       meta={"domain": domain, "split": split})
  prompt = rec.question
  if rec.choices:
    prompt += "\n" + "\n".join(f"{'ABCD'[k]}. {c}" for k, c in enumerate(rec.choices)) + "\n" + miner_demo.MC_SUFFIX
  return MinerSample(id=sid, dataset=name, prompt=prompt, answers=tuple(rec.answers), images=(image,),
                     choices=None if rec.choices is None else tuple(rec.choices),
                     meta={"domain": domain, "split": split})


def text_split(options) -> str:
  """The split an option tuple belongs to: 'val' for one in five tuples (by sha256), else 'train'."""
  h = int(hashlib.sha256(" ".join(options).encode()).hexdigest()[:8], 16)
  return "val" if h % 5 == 0 else "train"


def _text_sample(i: int, split: str, seed: int) -> MinerSample:
  """One word of each category in a random order; the question names one category."""
  for attempt in range(1000):
    rng = _rng(seed, "text_mc", split, i, attempt)
    cats = list(CATEGORIES)
    words = [CATEGORIES[c][int(rng.integers(len(CATEGORIES[c])))] for c in cats]
    order = rng.permutation(len(cats))
    options = tuple(words[k] for k in order)
    if text_split(options) == split:
      break
  asked = cats[int(rng.integers(len(cats)))]
  letter = "ABCD"[options.index(words[cats.index(asked)])]
  prompt = (f"Which of these is {asked}?\n" + "\n".join(f"{'ABCD'[k]}. {w}" for k, w in enumerate(options)) +
            "\n" + miner_demo.MC_SUFFIX)
  return MinerSample(id=f"text_mc-{split}-{i:04d}", dataset="text_mc", prompt=prompt, answers=(letter,),
                     choices=options, meta={"split": split, "category": asked})


def sound(kind: str, rng) -> np.ndarray:
  """float32[SAMPLING_RATE]: 1 s of one of `SOUNDS` at a random level, plus a little noise."""
  t = np.arange(SAMPLING_RATE) / SAMPLING_RATE
  amp = rng.uniform(0.3, 0.6)
  if kind == "beep":  # two or three short 880-1320 Hz bursts
    f, n = rng.uniform(880, 1320), int(rng.integers(2, 4))
    on = np.zeros_like(t)
    for k in range(n):
      on[(t >= (k + 0.1) / n) & (t < (k + 0.1) / n + 0.4 / n)] = 1.0
    wave = on * np.sin(2 * np.pi * f * t)
  elif kind == "chirp":  # a rising sweep
    f0, f1 = rng.uniform(200, 400), rng.uniform(2500, 4000)
    wave = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / 2))
  elif kind == "siren":  # two tones alternating four times a second
    lo = rng.uniform(500, 700)
    f = np.where((t * 4).astype(int) % 2 == 0, lo, 1.5 * lo)
    wave = np.sin(2 * np.pi * np.cumsum(f) / SAMPLING_RATE)
  elif kind == "hum":  # a steady low tone with harmonics
    f = rng.uniform(90, 140)
    wave = sum(np.sin(2 * np.pi * k * f * t) / k for k in (1, 2, 3)) / 1.8
  else:  # hiss: white noise
    wave = rng.standard_normal(t.shape) / 2.5
  return (amp * wave + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)


def _audio_sample(i: int, split: str, seed: int) -> MinerSample:
  rng = _rng(seed, "audio_qa", split, i)
  kind = i % 3
  if kind == 0:
    name = SOUNDS[int(rng.integers(len(SOUNDS)))]
    wave, prompt, answer = sound(name, rng), "What sound is this?", name
  elif kind == 1:
    beeps = int(rng.integers(1, 4))
    wave = miner_demo.beeps(rng, high=bool(rng.integers(2)), beeps=beeps)
    prompt, answer = "How many beeps are there?", str(beeps)
  else:
    high = bool(rng.integers(2))
    wave = miner_demo.beeps(rng, high=high, beeps=int(rng.integers(1, 4)))
    prompt, answer = "Is the tone high or low?", "high" if high else "low"
  return MinerSample(id=f"audio_qa-{split}-{i:04d}", dataset="audio_qa", prompt=prompt, answers=(answer,),
                     audios=(wave,), sampling_rate=SAMPLING_RATE, meta={"split": split})


def _video_sample(i: int, split: str, seed: int) -> MinerSample:
  rng = _rng(seed, "video_qa", split, i)
  frames, direction, colour = miner_demo.video_frames(rng)
  question, answer = ("Which way does the square move?", direction) if i % 2 == 0 else \
      ("What colour is the square?", colour)
  return MinerSample(id=f"video_qa-{split}-{i:04d}", dataset="video_qa",
                     prompt=f"{question}\n{miner_demo.VIDEO_PROMPT}", answers=(answer,), videos=(frames,),
                     meta=dict(miner_demo.VIDEO_META, split=split))


def skills_dataset(name: str, n: int, split: str = "val", seed: int = 0) -> list:
  """The first `n` samples of `name` (one of DATASETS) in `split` ('train' | 'val')."""
  if name not in DATASETS:
    raise ValueError(f"unknown skills dataset {name!r}; datasets are {list(DATASETS)}")
  if split not in SPLITS:
    raise ValueError(f"split={split!r}; expected one of {SPLITS}")
  if name == "text_mc":
    return [_text_sample(i, split, seed) for i in range(n)]
  if name == "audio_qa":
    return [_audio_sample(i, split, seed) for i in range(n)]
  if name == "video_qa":
    return [_video_sample(i, split, seed) for i in range(n)]
  return [_image_sample(name, i, split, seed) for i in range(n)]


def chance(name: str) -> float | None:
  """The expected primary metric of a uniform guess among each question's possible answers (None:
  captions, scored by string similarity)."""
  return {"image_qa": (1 / 4 + 1 / 3) / 2 / 5 + 4 / 5 / 4, "text_mc": 1 / 4,
          "audio_qa": (1 / len(SOUNDS) + 1 / 3 + 1 / 2) / 3,
          "video_qa": (1 / len(miner_demo.DIRECTIONS) + 1 / len(miner_demo.COLOURS)) / 2, "caption": None}[name]
