"""LLaVA-OneVision inputs named as HF's processor names them, built from the checkpoint's own
tokenizer and image processor (the PIL one: no torchvision): each `<image>` in a prompt becomes one
image token per packed anyres-max feature. Also the vision-encoder token cost of an image (the
MMNeuron stopping rule) and batch padding to a few fixed shapes. Videos are not built: HF's video
processor needs torchvision. Prompt building, padding and decoding are LLaVA-NeXT's.
"""
from mmneuron_jax.data.inputs.common import read_config
from mmneuron_jax.data.inputs.llava_next import LlavaNextInputs
from mmneuron_jax.models import anyres
from mmneuron_jax.models.mllm import llava_onevision


def _max_num_patches(config: dict) -> int:
  aspect = str(config.get("vision_aspect_ratio", "anyres_max_9"))
  if not (aspect.startswith("anyres_max_") and aspect[len("anyres_max_"):].isdigit()):
    raise ValueError(f"config.json: vision_aspect_ratio={aspect!r}; expected 'anyres_max_<n>'")
  return int(aspect[len("anyres_max_"):])


class LlavaOnevisionInputs(LlavaNextInputs):
  """prompts with one `<image>` each + PIL images -> {'input_ids', 'attention_mask',
  'pixel_values' float32[I, S, 3, H, W], 'image_sizes' int[I, 2]} (numpy)."""

  def __init__(self, tokenizer, image_processor, config: dict):
    self.max_num_patches = _max_num_patches(config)
    super().__init__(tokenizer, image_processor, config)

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


def vision_tokens(config: dict, size_hw) -> int:
  """LLaVA-OneVision: tiles x patches (SigLIP has no class token) for one (h, w) image."""
  v = config["vision_config"]
  tiles = anyres.num_tiles(size_hw, config["image_grid_pinpoints"], v["image_size"])
  return tiles * (v["image_size"] // v["patch_size"]) ** 2


# -- the data checklist (data/inputs/__init__.py CHECKLIST) ----------------------------------------
Inputs = LlavaOnevisionInputs
CHAT = None  # no MINER chat spec for this family
