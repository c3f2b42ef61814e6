"""Qwen2-VL model inputs without the HF processor (whose video half needs torchvision).

Images go through `transformers.Qwen2VLImageProcessorPil` (the PIL image processor; the
default `Qwen2VLImageProcessor` needs torchvision), giving `pixel_values` float32[N, C*Tp*p*p]
and `image_grid_thw` int[I, 3]. Videos (uint8[n, H, W, 3] sampled frames) go through
`video_patches`, this module's numpy port of `Qwen2VLVideoProcessor` (which needs torchvision),
giving `pixel_values_videos` and `video_grid_thw` int[V, 3]. Each `<|image_pad|>` / `<|video_pad|>`
placeholder in the token ids is expanded to t*h*w / merge_size**2 tokens, as the HF processor
does, and `mm_token_type_ids` (1 at image tokens, 2 at video tokens, else 0), which the HF model
needs, is built from the ids.
"""
import math

import numpy as np

from mmneuron_jax.data.inputs import token_rows
from mmneuron_jax.data.inputs.batching import pad_rows
from mmneuron_jax.data.inputs.chat import IMAGE_MARKER, ChatSpec


VIDEO_MIN_PIXELS, VIDEO_MAX_PIXELS = 128 * 28 * 28, 768 * 28 * 28  # Qwen2VLVideoProcessor's size defaults
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OPENAI_CLIP_MEAN / _STD, Qwen2-VL's normalisation
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def smart_resize(height: int, width: int, factor: int = 28, min_pixels: int = VIDEO_MIN_PIXELS,
                 max_pixels: int = VIDEO_MAX_PIXELS) -> tuple[int, int]:
  """Qwen2-VL's target (h, w): multiples of `factor`, area within [min_pixels, max_pixels], the
  aspect ratio kept as closely as possible."""
  if max(height, width) / min(height, width) > 200:
    raise ValueError(f"a {height}x{width} frame has an aspect ratio over 200")
  h, w = round(height / factor) * factor, round(width / factor) * factor
  if h * w > max_pixels:
    beta = math.sqrt(height * width / max_pixels)
    h = max(factor, math.floor(height / beta / factor) * factor)
    w = max(factor, math.floor(width / beta / factor) * factor)
  elif h * w < min_pixels:
    beta = math.sqrt(min_pixels / (height * width))
    h, w = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
  return h, w


def frames_problem(frames) -> str | None:
  """Why `frames` is not a video of uint8[n>0, H, W, 3] frames (None when it is)."""
  x = np.asarray(frames)
  if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8 or not len(x):
    return f"video frames must be uint8[n>0, H, W, 3]; got {x.dtype}{list(x.shape)}"
  return None


def resize_frames(frames, min_pixels: int = VIDEO_MIN_PIXELS, max_pixels: int = VIDEO_MAX_PIXELS,
                  factor: int = 28) -> np.ndarray:
  """uint8[n, H, W, 3] -> uint8[n, h, w, 3] at `smart_resize`'s size (PIL bicubic, as the PIL image processor)."""
  from PIL import Image
  frames = np.asarray(frames)
  why = frames_problem(frames)
  if why:
    raise ValueError(why)
  h, w = smart_resize(frames.shape[1], frames.shape[2], factor, min_pixels, max_pixels)
  if (h, w) == frames.shape[1:3]:
    return frames
  return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BICUBIC)) for f in frames])


def video_patches(frames, min_pixels: int = VIDEO_MIN_PIXELS, max_pixels: int = VIDEO_MAX_PIXELS,
                  patch_size: int = 14, temporal_patch_size: int = 2, merge_size: int = 2) -> tuple:
  """One video's uint8[n, H, W, 3] frames -> (float32[t*h*w, 3*Tp*p*p] patches, int64[3] grid (t, h, w)).

  As `Qwen2VLVideoProcessor`: smart_resize to multiples of patch_size * merge_size, pad n up to a
  multiple of temporal_patch_size with copies of the last frame, rescale by 1/255, normalise with
  the CLIP mean / std, and flatten patches in (t, h-block, w-block, h-in-block, w-in-block) order,
  each patch (C, Tp, p, p). Resize and arithmetic follow the PIL image processor, so a frame
  repeated Tp times gives exactly its `Qwen2VLImageProcessorPil` patches.
  """
  x = resize_frames(frames, min_pixels, max_pixels, patch_size * merge_size)
  x = np.concatenate([x, np.repeat(x[-1:], -len(x) % temporal_patch_size, axis=0)])
  x = (x.astype(np.float64) * (1 / 255)).astype(np.float32)
  x = (x - np.asarray(CLIP_MEAN, np.float32)) / np.asarray(CLIP_STD, np.float32)
  n, height, width, c = x.shape
  t, h, w, m, p = n // temporal_patch_size, height // patch_size, width // patch_size, merge_size, patch_size
  x = x.reshape(t, temporal_patch_size, h // m, m, p, w // m, m, p, c).transpose(0, 2, 5, 3, 6, 8, 1, 4, 7)
  return x.reshape(t * h * w, c * temporal_patch_size * p * p), np.array([t, h, w], np.int64)


def video_inputs(videos, **kwargs) -> dict:
  """Videos (each uint8[n, H, W, 3]) -> {'pixel_values_videos' float32[N, 3*Tp*p*p], 'video_grid_thw' int64[V, 3]};
  kwargs as `video_patches`."""
  out = [video_patches(v, **kwargs) for v in videos]
  return {"pixel_values_videos": np.concatenate([p for p, _ in out]) if out else None,
          "video_grid_thw": np.stack([g for _, g in out]) if out else np.zeros((0, 3), np.int64)}


def num_image_tokens(grid_thw, merge_size: int) -> int:
  """Merged tokens of one image or video: t * h * w / merge_size**2."""
  t, h, w = (int(v) for v in grid_thw)
  return t * h * w // merge_size ** 2


def mm_token_type_ids(input_ids, image_token_id: int, video_token_id: int) -> np.ndarray:
  """HF's modality type of every token: 1 image, 2 video, 0 text. int64[B, T]."""
  ids = np.asarray(input_ids)
  return np.where(ids == image_token_id, 1, np.where(ids == video_token_id, 2, 0)).astype(np.int64)


def build_batch(rows, pixel_values, image_grid_thw, config: dict, padding_side: str = "right",
                pad_id: int = 0, pixel_values_videos=None, video_grid_thw=()) -> dict:
  """Rows of token ids holding one `<|image_pad|>` id per image and one `<|video_pad|>` id per
  video (each numbered in row order) + the image / video processor outputs -> the HF model's
  inputs (numpy): {'input_ids', 'attention_mask', 'mm_token_type_ids'} + {'pixel_values',
  'image_grid_thw'} when there are images + {'pixel_values_videos', 'video_grid_thw'} when
  there are videos."""
  image_id, video_id = config.get("image_token_id", 151655), config.get("video_token_id", 151656)
  merge = (config.get("vision_config") or {}).get("spatial_merge_size", 2)
  grid = np.asarray(image_grid_thw, np.int64).reshape(-1, 3)
  video_grid = np.asarray(video_grid_thw, np.int64).reshape(-1, 3)
  expanded = token_rows.expand_rows(rows, [num_image_tokens(g, merge) for g in grid], image_id, "image",
                                    "image_grid_thw")
  expanded = token_rows.expand_rows(expanded, [num_image_tokens(g, merge) for g in video_grid], video_id, "video",
                                    "video_grid_thw")
  ids, mask = pad_rows(expanded, pad_id, padding_side)
  batch = {"input_ids": ids, "attention_mask": mask, "mm_token_type_ids": mm_token_type_ids(ids, image_id, video_id)}
  if len(grid):
    batch.update(pixel_values=np.asarray(pixel_values, np.float32), image_grid_thw=grid)
  if len(video_grid):
    batch.update(pixel_values_videos=np.asarray(pixel_values_videos, np.float32), video_grid_thw=video_grid)
  return batch


def pixel_bounds(processor) -> tuple:
  """(min_pixels, max_pixels) an image processor resizes to (new `size.shortest_edge / longest_edge` or the
  older `min_pixels / max_pixels` attributes)."""
  size = getattr(processor, "size", None)
  get = (lambda k: size.get(k)) if isinstance(size, dict) else (lambda k: getattr(size, k, None))
  lo = get("shortest_edge") or get("min_pixels") or getattr(processor, "min_pixels", None)
  hi = get("longest_edge") or get("max_pixels") or getattr(processor, "max_pixels", None)
  if lo is None or hi is None:
    raise ValueError(f"cannot read the pixel bounds of {type(processor).__name__} (size={size!r})")
  return int(lo), int(hi)


def image_processor(**kwargs):
  """The PIL Qwen2-VL image processor (no torchvision needed); kwargs as HF's (min_pixels, ...)."""
  import transformers
  cls = getattr(transformers, "Qwen2VLImageProcessorPil", None) or transformers.Qwen2VLImageProcessor
  return cls(**kwargs)


class Qwen2VLInputs:
  """Prompts + PIL images (+ videos: uint8[n, H, W, 3] sampled frames) -> HF-named model inputs (numpy).

  A prompt marks each image with `<image>` (becomes `<|vision_start|><|image_pad|><|vision_end|>`)
  or with the `<|image_pad|>` token itself, and each video with `<video>` (`<|video_pad|>` inside
  the same pair) or `<|video_pad|>`; `images[i]` / `videos[i]` list prompt i's images / videos (or
  are one). Videos are resized within [video_min_pixels, video_max_pixels] (the HF video
  processor's defaults unless given).
  """

  def __init__(self, tokenizer, image_processor, config: dict, video_min_pixels: int = VIDEO_MIN_PIXELS,
               video_max_pixels: int = VIDEO_MAX_PIXELS):
    self.tokenizer = tokenizer
    self.image_processor = image_processor
    self.config = config
    self.video_pixels = dict(min_pixels=video_min_pixels, max_pixels=video_max_pixels)
    token = lambda key, default: tokenizer.convert_ids_to_tokens(config.get(key, default))
    self.pad_token = token("image_token_id", 151655)
    self.video_token = token("video_token_id", 151656)
    self.start_token = token("vision_start_token_id", 151652)
    self.end_token = token("vision_end_token_id", 151653)

  @classmethod
  def from_pretrained(cls, path: str, min_pixels: int = 0, max_pixels: int = 0, video_frames: str = "once",
                      **kwargs):
    """min_pixels / max_pixels: the image processor's bounds (0 = the checkpoint's preprocessor_config.json).
    video_frames: 'authors' = frames go through those same bounds (transformers 4.45-4.47 sized video frames
    with the image processor, so the MINER authors' min_pixels=256*28*28 upscaled small frames); 'once' =
    the video processor's own bounds (`video_min_pixels` / `video_max_pixels` in kwargs)."""
    import json
    import os

    import transformers
    tok = transformers.AutoTokenizer.from_pretrained(path)
    cls_ = getattr(transformers, "Qwen2VLImageProcessorPil", None) or transformers.Qwen2VLImageProcessor
    bounds = {k: int(v) for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v}
    proc = cls_.from_pretrained(path, **bounds)
    if video_frames == "authors":
      kwargs["video_min_pixels"], kwargs["video_max_pixels"] = pixel_bounds(proc)
    elif video_frames != "once":
      raise ValueError(f"video_frames={video_frames!r}; expected 'authors' or 'once'")
    with open(os.path.join(path, "config.json")) as f:
      out = cls(tok, proc, json.load(f), **kwargs)
    out.video_frames = video_frames
    return out

  def settings(self) -> dict:
    """The pixel bounds in effect (for a run's protocol record)."""
    lo, hi = pixel_bounds(self.image_processor)
    return {"min_pixels": lo, "max_pixels": hi, "video_min_pixels": self.video_pixels["min_pixels"],
            "video_max_pixels": self.video_pixels["max_pixels"], "video_frames": getattr(self, "video_frames", "once")}

  def videos(self, videos) -> dict:
    """Videos (uint8[n, H, W, 3] each) -> {'pixel_values_videos', 'video_grid_thw'} for this checkpoint."""
    v = self.config.get("vision_config") or {}
    return video_inputs(videos, patch_size=v.get("patch_size", 14), temporal_patch_size=v.get("temporal_patch_size", 2),
                        merge_size=v.get("spatial_merge_size", 2), **self.video_pixels)

  def __call__(self, prompts, images=None, padding_side="right", videos=None):
    images = [[] for _ in prompts] if images is None else images
    videos = [[] for _ in prompts] if videos is None else videos
    if not len(prompts) == len(images) == len(videos):
      raise ValueError(f"{len(prompts)} prompts but {len(images)} image lists and {len(videos)} video lists")
    listed = lambda x: list(x) if isinstance(x, (list, tuple)) else [x]
    per_row, per_row_videos = [listed(im) for im in images], [listed(v) for v in videos]
    flat = [im.convert("RGB") for row in per_row for im in row]
    pix = self.image_processor(flat, return_tensors="np") if flat else {"pixel_values": None, "image_grid_thw": []}
    vid = self.videos([v for row in per_row_videos for v in row])
    rows = []
    for prompt, row_images, row_videos in zip(prompts, per_row, per_row_videos):
      text = prompt.replace("<image>", self.start_token + self.pad_token + self.end_token)
      text = text.replace("<video>", self.start_token + self.video_token + self.end_token)
      for token, items, what in ((self.pad_token, row_images, "image"), (self.video_token, row_videos, "video")):
        if text.count(token) != len(items):
          raise ValueError(f"prompt has {text.count(token)} {what} markers but {len(items)} {what}s: {prompt!r}")
      rows.append(self.tokenizer(text)["input_ids"])
    return build_batch(rows, pix["pixel_values"], pix["image_grid_thw"], self.config, padding_side,
                       token_rows.pad_id(self.tokenizer), vid["pixel_values_videos"], vid["video_grid_thw"])

  def decode(self, token_ids) -> list[str]:
    return token_rows.decode(self.tokenizer, token_ids)


# -- the data checklist (data/inputs/__init__.py CHECKLIST) ----------------------------------------
Inputs = Qwen2VLInputs
vision_tokens = None  # no MMNeuron stopping-rule cost for this family
CHAT = ChatSpec(
    "qwen2_vl", "image", IMAGE_MARKER, ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>"),
    {"image": "image_token_id", "video": "video_token_id"}, takes=("image", "video"),
    # frames come sized by `videos_of` (qwen_vl_utils); with video_frames='once' a low floor keeps the
    # video processor from resizing them again ('authors': the image bounds resize them, as transformers 4.45)
    processor_kwargs=(("video_min_pixels", 28 * 28),),
    modalities=("text", "special", "special_text", "image", "video", "prompt"),
    options=("min_pixels", "max_pixels", "video_frames"))
