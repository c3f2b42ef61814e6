"""LLaVA-OneVision inputs named as HF's processor names them, built from the checkpoint's own
tokenizer and image processor (the PIL one: no torchvision): each `<image>` in a prompt becomes one
image token per packed anyres-max feature. Also the vision-encoder token cost of an image (the
MMNeuron stopping rule) and batch padding to a few fixed shapes. Videos are not built: HF's video
processor needs torchvision.
"""
import numpy as np

from mmneuron_jax.data.inputs.batching import pad_batch, pad_rows
from mmneuron_jax.data.inputs.common import IMAGE_PLACEHOLDER, decode, read_config
from mmneuron_jax.models import anyres
from mmneuron_jax.models.mllm import llava_onevision


def _max_num_patches(config: dict) -> int:
  aspect = str(config.get("vision_aspect_ratio", "anyres_max_9"))
  if not (aspect.startswith("anyres_max_") and aspect[len("anyres_max_"):].isdigit()):
    raise ValueError(f"config.json: vision_aspect_ratio={aspect!r}; expected 'anyres_max_<n>'")
  return int(aspect[len("anyres_max_"):])


class LlavaOnevisionInputs:
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
    self.max_num_patches = _max_num_patches(config)
    self.image_token_id = config["image_token_index"]
    self.image_token = tokenizer.convert_ids_to_tokens(self.image_token_id)
    self.tile_slots = 1 + max((h // self.tile) * (w // self.tile) for h, w in self.pinpoints)

  @classmethod
  def from_pretrained(cls, path: str, hf_config: dict | None = None):
    """`hf_config`: the model's config.json contents (default: read from `path`)."""
    import transformers
    tok = transformers.AutoTokenizer.from_pretrained(path)
    proc = transformers.LlavaOnevisionImageProcessorPil.from_pretrained(path)
    return cls(tok, proc, hf_config or read_config(path))

  def num_image_tokens(self, size_hw) -> int:
    return llava_onevision.num_image_tokens(size_hw, self.pinpoints, self.tile, self.side, self.max_num_patches)

  def num_vision_tokens(self, size_hw) -> int:
    """Vision-encoder tokens one (h, w) image costs: all anyres tiles."""
    return vision_tokens(self.config, size_hw)

  def __call__(self, prompts, images, padding_side="right"):
    if len(prompts) != len(images):
      raise ValueError(f"{len(prompts)} prompts but {len(images)} images")
    pix = self.image_processor([im.convert("RGB") for im in images], return_tensors="np")
    rows = []
    for prompt, size in zip(prompts, pix["image_sizes"]):
      if prompt.count(IMAGE_PLACEHOLDER) != 1:
        raise ValueError(f"prompt must hold exactly one <image>: {prompt!r}")
      text = prompt.replace(IMAGE_PLACEHOLDER, self.image_token * self.num_image_tokens(size))
      rows.append(self.tokenizer(text)["input_ids"])
    ids, mask = pad_rows(rows, self.pad_id, padding_side)
    return {"input_ids": ids, "attention_mask": mask, "pixel_values": pix["pixel_values"].astype(np.float32),
            "image_sizes": np.asarray(pix["image_sizes"])}

  @property
  def pad_id(self) -> int:
    return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

  def pad(self, batch: dict, rows: int, length_multiple: int = 64, padding_side: str = "right") -> dict:
    """Pad to `rows` rows (empty rows carry no image), the length to a multiple, tiles to the most
    any image can have (so a statistics run compiles once per length)."""
    return pad_batch(batch, rows, length_multiple, self.tile_slots, self.pad_id, padding_side=padding_side)

  def decode(self, token_ids) -> list[str]:
    return decode(self.tokenizer, token_ids)


def vision_tokens(config: dict, size_hw) -> int:
  """LLaVA-OneVision: tiles x patches (SigLIP has no class token) for one (h, w) image."""
  v = config["vision_config"]
  tiles = anyres.num_tiles(size_hw, config["image_grid_pinpoints"], v["image_size"])
  return tiles * (v["image_size"] // v["patch_size"]) ** 2


# -- the data checklist (data/inputs/__init__.py CHECKLIST) ----------------------------------------
Inputs = LlavaOnevisionInputs
CHAT = None  # no MINER chat spec for this family
