"""MINER samples: one prompt with its modality content (images, audio) and reference answers.

A dataset for the MINER task is a list of samples. `MinerSample` is the native type; `as_sample`
also accepts the MMNeuron `VQARecord` and plain dicts / objects with the same field names, so
benchmark loaders may return whichever is convenient:

  id, prompt (or question), answers, images (or image / image_path / image_bytes / image_paths),
  audios (or audio: float[S] waveforms, with sampling_rate), videos (or video / video_path, or
  modality == 'video' with media_path), choices, meta.

`prompt` is the user text. `<image>` / `<video>` / `<audio>` markers place the media inside it;
without markers the media come first (as a chat message [image..., video..., audio..., text]).

Videos are sampled and sized as the authors' `qwen_vl_utils` does before the Qwen2-VL processor
(`videos_of`): frames at `meta['fps']` (default 1.0) by `media.read_video_frames`, resized by
`smart_resize` within [meta['min_pixels'], meta['max_pixels']] (defaults: the HF video
processor's 128 * 28 * 28 and 768 * 28 * 28; MSVD-QA sets max_pixels 360 * 420).
"""
import dataclasses
import io
import os

import numpy as np

from mmneuron_jax.data.inputs.chat import AUDIO_MARKER, IMAGE_MARKER, VIDEO_MARKER  # noqa: F401  (re-exported)
from mmneuron_jax.data.inputs.qwen2_vl import VIDEO_MAX_PIXELS, VIDEO_MIN_PIXELS, frames_problem, resize_frames
from mmneuron_jax.data.sources import media
from mmneuron_jax.data.sources.records import BadImage


@dataclasses.dataclass(frozen=True)
class MinerSample:
  """id; dataset name; prompt text; answers [str]; images: PNG/JPEG bytes, paths or PIL images;
  audios: float32[S] waveforms at `sampling_rate` Hz; videos: file paths or uint8[n, H, W, 3]
  sampled frames (see `videos_of`); choices [str] or None; meta dict (video sampling: fps,
  min_pixels, max_pixels)."""
  id: str
  dataset: str
  prompt: str
  answers: tuple = ()
  images: tuple = ()
  audios: tuple = ()
  videos: tuple = ()
  sampling_rate: int = 16000
  choices: tuple | None = None
  meta: dict = dataclasses.field(default_factory=dict)

  @property
  def modalities(self) -> tuple:
    """Content modalities besides text: ('image',), ('audio',), () ..."""
    return tuple(m for m, v in (("image", self.images), ("audio", self.audios), ("video", self.videos)) if len(v))


def _get(record, *names, default=None):
  for n in names:
    v = record.get(n) if isinstance(record, dict) else getattr(record, n, None)
    if v is not None:
      return v
  return default


def as_sample(record, dataset: str) -> MinerSample:
  """A MinerSample, VQARecord, dict or object with MinerSample-like fields -> MinerSample."""
  if isinstance(record, MinerSample):
    return record if record.dataset == dataset else dataclasses.replace(record, dataset=dataset)
  rid = _get(record, "id")
  if rid is None:
    raise ValueError(f"dataset {dataset!r}: a record has no 'id' field: {str(record)[:120]}")
  images = _get(record, "images", "image_paths")
  if images is None:
    one = _get(record, "image", "image_bytes", "image_path")
    images = () if one is None else (one,)
  audios = _get(record, "audios")
  if audios is None:
    one = _get(record, "audio")
    audios = () if one is None else (one,)
  videos = _get(record, "videos")
  if videos is None:
    one = _get(record, "video", "video_path")
    if one is None and _get(record, "modality") == "video":  # e.g. a BenchRecord of MSVD-QA
      one = _get(record, "media_path", default="<video>")
    videos = () if one is None else (one,)
  prompt = _get(record, "prompt", "question", default="")
  answers = _get(record, "answers", default=())
  if isinstance(answers, str):
    answers = (answers,)
  choices = _get(record, "choices")
  return MinerSample(id=str(rid), dataset=dataset, prompt=str(prompt), answers=tuple(str(a) for a in answers),
                     images=tuple(images), audios=tuple(audios), videos=tuple(videos),
                     sampling_rate=int(_get(record, "sampling_rate", default=16000)),
                     choices=None if choices is None else tuple(choices), meta=dict(_get(record, "meta", default={})))


def load_image(source, name: str):
  """Bytes, a path or a PIL image -> RGB PIL image; BadImage naming `name` when unreadable."""
  from PIL import Image
  if isinstance(source, Image.Image):
    return source.convert("RGB")
  try:
    with Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source) as im:
      im.load()
      return im.convert("RGB")
  except FileNotFoundError as e:
    raise BadImage(f"image file not found: {name}") from e
  except (OSError, SyntaxError, ValueError) as e:
    raise BadImage(f"corrupt image {name}: {e}") from e


def images_of(sample: MinerSample) -> list:
  return [load_image(im, f"{sample.id} image {i}") for i, im in enumerate(sample.images)]


def audios_of(sample: MinerSample) -> list:
  """float32[S] waveforms (arrays, or .npy paths)."""
  out = []
  for i, a in enumerate(sample.audios):
    try:
      x = np.load(a) if isinstance(a, str) else np.asarray(a, np.float32)
    except (OSError, ValueError) as e:
      raise ValueError(f"sample {sample.id}: audio {i} unreadable ({e})") from e
    if x.ndim != 1 or x.size == 0:
      raise ValueError(f"sample {sample.id}: audio {i} must be a non-empty float[S] waveform; got shape {x.shape}")
    out.append(x.astype(np.float32))
  return out


def videos_of(sample: MinerSample) -> list:
  """uint8[n, h, w, 3] frames of every video: decoded (file paths) at meta fps, then resized as
  `qwen_vl_utils` does within meta [min_pixels, max_pixels] (multiples of 28 px)."""
  out = []
  for i, v in enumerate(sample.videos):
    frames = media.read_video_frames(v, float(sample.meta.get("fps", 1.0))) if isinstance(v, str) else np.asarray(v)
    try:
      out.append(resize_frames(frames, int(sample.meta.get("min_pixels", VIDEO_MIN_PIXELS)),
                               int(sample.meta.get("max_pixels", VIDEO_MAX_PIXELS))))
    except ValueError as e:
      raise ValueError(f"sample {sample.id}: video {i}: {e}") from e
  return out


def _video_problem(sample: MinerSample) -> str | None:
  """A missing video file or malformed frames (files are decoded only when batched)."""
  for i, v in enumerate(sample.videos):
    if isinstance(v, str):
      if not os.path.isfile(v):
        return f"video file not found: {v}"
      continue
    why = frames_problem(v)
    if why:
      return f"video {i}: {why} (or a file path)"
  return None


def problem(sample: MinerSample, supported: tuple) -> str | None:
  """Why a sample cannot be used (None when fine): empty prompt, unreadable media, or a modality
  the model family does not take (`supported`, e.g. ('image', 'video'))."""
  if not sample.prompt.strip() and not sample.images and not sample.audios and not sample.videos:
    return "empty prompt"
  for m in sample.modalities:
    if m not in supported:
      return f"has {m} content, which this model family does not take (supported: {list(supported)})"
  try:
    images_of(sample)
    audios_of(sample)
  except (BadImage, ValueError) as e:
    return str(e)
  why = _video_problem(sample)
  if why:
    return why
  n_img = sample.prompt.count(IMAGE_MARKER)
  if n_img and n_img != len(sample.images):
    return f"prompt has {n_img} {IMAGE_MARKER} markers but {len(sample.images)} images"
  n_vid = sample.prompt.count(VIDEO_MARKER)
  if n_vid and n_vid != len(sample.videos):
    return f"prompt has {n_vid} {VIDEO_MARKER} markers but {len(sample.videos)} videos"
  n_aud = sample.prompt.count(AUDIO_MARKER)
  if n_aud and n_aud != len(sample.audios):
    return f"prompt has {n_aud} {AUDIO_MARKER} markers but {len(sample.audios)} audios"
  return None


def validate(samples, supported: tuple) -> tuple:
  """-> (good samples, bad [(id, reason)]); duplicate ids are bad too."""
  good, bad, seen = [], [], set()
  for s in samples:
    why = f"duplicate id {s.id!r}" if s.id in seen else problem(s, supported)
    seen.add(s.id)
    if why:
      bad.append((s.id, why))
    else:
      good.append(s)
  return good, bad
