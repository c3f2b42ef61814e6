"""Drawing helpers shared by the synthetic sets (data/synthetic/demo.py, skills.py): named colours, the
default PIL font at a size, PNG bytes of an image, a seeded pick from a sequence, a road scene's background."""
import functools
import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

COLORS = {"red": (210, 40, 40), "blue": (40, 80, 215), "green": (40, 160, 60), "yellow": (240, 205, 35),
          "orange": (245, 135, 25), "purple": (135, 60, 180), "white": (235, 235, 235), "black": (30, 30, 30)}


@functools.lru_cache(maxsize=None)
def font(size: int):
  return ImageFont.load_default(size=size)


def png(image: Image.Image) -> bytes:
  buf = io.BytesIO()
  image.save(buf, format="PNG", compress_level=3)
  return buf.getvalue()


def pick(rng, seq):
  return seq[int(rng.integers(len(seq)))]


def sky_and_grass(rng, h: int, w: int, hy: int):
  """A driving scene's background: sky gradient above row `hy`, noisy grass below -> (PIL image, its draw)."""
  rows = np.linspace(0.0, 1.0, hy)[:, None, None]
  arr = np.empty((h, w, 3), np.float32)
  arr[:hy] = (1 - rows) * np.array([80, 140, 225]) + rows * np.array([195, 215, 240])
  arr[hy:] = np.array([75, 130, 60]) + rng.normal(0, 6, (h - hy, w, 1))
  img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
  return img, ImageDraw.Draw(img)
