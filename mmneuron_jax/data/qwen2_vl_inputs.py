"""Qwen2-VL model inputs without the HF processor (whose video half needs torchvision).

Images go through `transformers.Qwen2VLImageProcessorPil` (the PIL image processor; the
default `Qwen2VLImageProcessor` needs torchvision), giving `pixel_values` float32[N, C*Tp*p*p]
and `image_grid_thw` int[I, 3]. Each image placeholder `<|image_pad|>` in the token ids is
expanded to t*h*w / merge_size**2 tokens, as the HF processor does, and `mm_token_type_ids`
(1 at image tokens, 2 at video tokens, else 0), which the HF model needs, is built from the ids.
"""
import numpy as np

from mmneuron_jax.data import token_rows
from mmneuron_jax.data.batching import pad_rows


def num_image_tokens(grid_thw, merge_size: int) -> int:
  """Merged tokens of one image: t * h * w / merge_size**2."""
  t, h, w = (int(v) for v in grid_thw)
  return t * h * w // merge_size ** 2


def mm_token_type_ids(input_ids, image_token_id: int, video_token_id: int) -> np.ndarray:
  """HF's modality type of every token: 1 image, 2 video, 0 text. int64[B, T]."""
  ids = np.asarray(input_ids)
  return np.where(ids == image_token_id, 1, np.where(ids == video_token_id, 2, 0)).astype(np.int64)


def build_batch(rows, pixel_values, image_grid_thw, config: dict, padding_side: str = "right",
                pad_id: int = 0) -> dict:
  """Rows of token ids holding one `<|image_pad|>` id per image (images in row order) + the
  image processor outputs -> the HF model's inputs (numpy):
  {'input_ids', 'attention_mask', 'mm_token_type_ids'} + {'pixel_values', 'image_grid_thw'}
  when there are images."""
  image_id, video_id = config.get("image_token_id", 151655), config.get("video_token_id", 151656)
  merge = (config.get("vision_config") or {}).get("spatial_merge_size", 2)
  grid = np.asarray(image_grid_thw, np.int64).reshape(-1, 3)
  counts = [num_image_tokens(g, merge) for g in grid]
  expanded = token_rows.expand_rows(rows, counts, image_id, "image", "image_grid_thw")
  ids, mask = pad_rows(expanded, pad_id, padding_side)
  batch = {"input_ids": ids, "attention_mask": mask, "mm_token_type_ids": mm_token_type_ids(ids, image_id, video_id)}
  if len(grid):
    batch.update(pixel_values=np.asarray(pixel_values, np.float32), image_grid_thw=grid)
  return batch


def image_processor(**kwargs):
  """The PIL Qwen2-VL image processor (no torchvision needed); kwargs as HF's (min_pixels, ...)."""
  import transformers
  cls = getattr(transformers, "Qwen2VLImageProcessorPil", None) or transformers.Qwen2VLImageProcessor
  return cls(**kwargs)


class Qwen2VLInputs:
  """Prompts + PIL images -> HF-named model inputs (numpy).

  A prompt marks each image with `<image>` (becomes `<|vision_start|><|image_pad|><|vision_end|>`)
  or with the `<|image_pad|>` token itself; `images[i]` lists prompt i's images (or is one image).
  """

  def __init__(self, tokenizer, image_processor, config: dict):
    self.tokenizer = tokenizer
    self.image_processor = image_processor
    self.config = config
    self.pad_token = tokenizer.convert_ids_to_tokens(config.get("image_token_id", 151655))
    self.start_token = tokenizer.convert_ids_to_tokens(config.get("vision_start_token_id", 151652))
    self.end_token = tokenizer.convert_ids_to_tokens(config.get("vision_end_token_id", 151653))

  @classmethod
  def from_pretrained(cls, path: str):
    import json
    import os

    import transformers
    tok = transformers.AutoTokenizer.from_pretrained(path)
    cls_ = getattr(transformers, "Qwen2VLImageProcessorPil", None) or transformers.Qwen2VLImageProcessor
    proc = cls_.from_pretrained(path)
    with open(os.path.join(path, "config.json")) as f:
      return cls(tok, proc, json.load(f))

  def __call__(self, prompts, images, padding_side="right"):
    if len(prompts) != len(images):
      raise ValueError(f"{len(prompts)} prompts but {len(images)} image lists")
    per_row = [list(im) if isinstance(im, (list, tuple)) else [im] for im in images]
    flat = [im.convert("RGB") for row in per_row for im in row]
    pix = self.image_processor(flat, return_tensors="np") if flat else {"pixel_values": None, "image_grid_thw": []}
    rows = []
    for prompt, row_images in zip(prompts, per_row):
      text = prompt.replace("<image>", self.start_token + self.pad_token + self.end_token)
      if text.count(self.pad_token) != len(row_images):
        raise ValueError(f"prompt has {text.count(self.pad_token)} image markers but {len(row_images)} images: "
                         f"{prompt!r}")
      rows.append(self.tokenizer(text)["input_ids"])
    return build_batch(rows, pix["pixel_values"], pix["image_grid_thw"], self.config, padding_side,
                       token_rows.pad_id(self.tokenizer))

  def decode(self, token_ids) -> list[str]:
    return token_rows.decode(self.tokenizer, token_ids)
