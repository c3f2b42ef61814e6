"""What the per-family input builders share: the image placeholder, the checkpoint's config.json, decoding."""
import json
import os

import numpy as np

IMAGE_PLACEHOLDER = "<image>"


def read_config(path: str) -> dict:
  with open(os.path.join(path, "config.json")) as f:
    return json.load(f)


def decode(tokenizer, token_ids) -> list[str]:
  """int[B, N] new tokens (-1 = none) -> stripped strings without special tokens."""
  return [tokenizer.decode([t for t in row if t >= 0], skip_special_tokens=True).strip()
          for row in np.asarray(token_ids)]
