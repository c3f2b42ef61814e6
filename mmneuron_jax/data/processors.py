"""Model inputs named as HF processors name them, built from the checkpoint's own tokenizer and
image processor plus our placeholder expansion (each `<image>` becomes one token per feature)."""
import numpy as np

from mmneuron_jax.data.batching import pad_rows
from mmneuron_jax.models import anyres


class LlavaNextInputs:
  """prompts with one `<image>` each + PIL images -> {'input_ids', 'attention_mask',
  'pixel_values' float32[I, S, 3, H, W], 'image_sizes' int[I, 2]} (numpy)."""

  def __init__(self, tokenizer, image_processor, config: dict):
    self.tokenizer = tokenizer
    self.image_processor = image_processor
    self.config = config
    v = config["vision_config"]
    self.tile = v["image_size"]
    self.side = v["image_size"] // v["patch_size"]
    self.pinpoints = config["image_grid_pinpoints"]
    self.image_token = tokenizer.convert_ids_to_tokens(config["image_token_index"])

  @classmethod
  def from_pretrained(cls, path: str):
    import json
    import os

    import transformers
    tok = transformers.AutoTokenizer.from_pretrained(path)
    try:
      proc = transformers.LlavaNextImageProcessorPil.from_pretrained(path)
    except AttributeError:  # older transformers: the slow processor is the PIL one
      proc = transformers.LlavaNextImageProcessor.from_pretrained(path)
    with open(os.path.join(path, "config.json")) as f:
      return cls(tok, proc, json.load(f))

  def num_image_tokens(self, size_hw) -> int:
    return len(anyres.image_feature_order(size_hw, self.pinpoints, self.tile, self.side, 0, -1))

  def __call__(self, prompts, images, padding_side="right"):
    if len(prompts) != len(images):
      raise ValueError(f"{len(prompts)} prompts but {len(images)} images")
    pix = self.image_processor([im.convert("RGB") for im in images], return_tensors="np")
    rows = []
    for prompt, size in zip(prompts, pix["image_sizes"]):
      if prompt.count("<image>") != 1:
        raise ValueError(f"prompt must hold exactly one <image>: {prompt!r}")
      text = prompt.replace("<image>", self.image_token * self.num_image_tokens(size))
      rows.append(self.tokenizer(text)["input_ids"])
    pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
    ids, mask = pad_rows(rows, pad, padding_side)
    return {"input_ids": ids, "attention_mask": mask, "pixel_values": pix["pixel_values"].astype(np.float32),
            "image_sizes": np.asarray(pix["image_sizes"])}

  def decode(self, token_ids) -> list[str]:
    return [self.tokenizer.decode([t for t in row if t >= 0], skip_special_tokens=True).strip()
            for row in np.asarray(token_ids)]
