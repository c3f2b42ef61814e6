"""Qwen2.5-VL model inputs without the HF processor (whose video half needs torchvision).

Qwen2.5-VL keeps Qwen2-VL's image processor, video patching and placeholder expansion
(`data/inputs/qwen2_vl.py`); its processor adds `second_per_grid_ts` float32[V], the seconds one
temporal patch spans (temporal_patch_size / fps of the sampled frames), which the model's M-RoPE
reads for absolute time. Frames reach `Qwen25VLInputs` already sampled, so their fps is an option
(`video_fps`, default 1.0: MINER's frame sampling default, `data/sources/miner_samples.videos_of`).
"""
import numpy as np

from mmneuron_jax.data.inputs import qwen2_vl
from mmneuron_jax.data.inputs.chat import IMAGE_MARKER, ChatSpec

VIDEO_FPS = 1.0


def build_batch(rows, pixel_values, image_grid_thw, config: dict, padding_side: str = "right", pad_id: int = 0,
                pixel_values_videos=None, video_grid_thw=(), second_per_grid_ts=None, video_fps: float = VIDEO_FPS):
  """`qwen2_vl.build_batch`, plus `second_per_grid_ts` float32[V] when there are videos (given, else
  temporal_patch_size / video_fps for every video, as the HF processor computes it)."""
  batch = qwen2_vl.build_batch(rows, pixel_values, image_grid_thw, config, padding_side, pad_id, pixel_values_videos,
                               video_grid_thw)
  if "video_grid_thw" in batch:
    n = len(batch["video_grid_thw"])
    if second_per_grid_ts is None:
      patch = (config.get("vision_config") or {}).get("temporal_patch_size", 2)
      second_per_grid_ts = [patch / video_fps] * n
    seconds = np.asarray(second_per_grid_ts, np.float32).reshape(-1)
    if len(seconds) != n:
      raise ValueError(f"second_per_grid_ts has {len(seconds)} entries for {n} videos")
    batch["second_per_grid_ts"] = seconds
  return batch


class Qwen25VLInputs(qwen2_vl.Qwen2VLInputs):
  """`Qwen2VLInputs` (prompts + PIL images + sampled video frames -> HF-named numpy batch), adding
  `second_per_grid_ts` for videos sampled at `video_fps` frames per second."""

  def __init__(self, tokenizer, image_processor, config: dict, video_fps: float = VIDEO_FPS, **kwargs):
    super().__init__(tokenizer, image_processor, config, **kwargs)
    if not video_fps > 0:
      raise ValueError(f"video_fps={video_fps!r} must be > 0")
    self.video_fps = float(video_fps)

  def settings(self) -> dict:
    return dict(super().settings(), video_fps=self.video_fps)

  def __call__(self, prompts, images, padding_side="right", videos=None):
    batch = super().__call__(prompts, images, padding_side, videos)
    if "video_grid_thw" in batch:
      patch = (self.config.get("vision_config") or {}).get("temporal_patch_size", 2)
      batch["second_per_grid_ts"] = np.full(len(batch["video_grid_thw"]), patch / self.video_fps, np.float32)
    return batch


# -- the data checklist (data/inputs/__init__.py CHECKLIST) ----------------------------------------
Inputs = Qwen25VLInputs
vision_tokens = None  # no MMNeuron stopping-rule cost for this family
CHAT = ChatSpec(
    "qwen2_5_vl", "image", IMAGE_MARKER, ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>"),
    {"image": "image_token_id", "video": "video_token_id"}, takes=("image", "video"),
    processor_kwargs=qwen2_vl.CHAT.processor_kwargs, modalities=qwen2_vl.CHAT.modalities,
    options=qwen2_vl.CHAT.options + ("video_fps",))
