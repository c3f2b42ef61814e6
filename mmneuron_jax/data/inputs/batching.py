"""Padding batches to a few fixed shapes so a long statistics run compiles a handful of times."""
import numpy as np


def round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def pad_2d(a, rows: int, width: int, value, left: bool) -> np.ndarray:
  """[B, T] -> [rows, width] filled with `value`, `a` in the first B rows at the right end
  (left=True) or the left end of each row."""
  a = np.asarray(a)
  b, t = a.shape
  out = np.full((rows, width), value, a.dtype)
  out[:b, (slice(width - t, width) if left else slice(0, t))] = a
  return out


def pad_batch(batch: dict, rows: int, length_multiple: int = 64, tile_slots: int | None = None, pad_id: int = 0,
              padding_side: str | None = None):
  """Pad `input_ids`/`attention_mask` [B, T] to [rows, round_up(T)] on the right (or on the
  left when the batch is left-padded) and 5-D `pixel_values` to `tile_slots` tiles per image.
  Padded rows and positions have attention_mask 0 and carry no images. `padding_side`
  ('left' / 'right') says which side the batch is padded on; None guesses from the mask (a
  batch of equal-length rows then counts as right-padded)."""
  ids, am = np.asarray(batch["input_ids"]), np.asarray(batch["attention_mask"])
  b, t = ids.shape
  if rows < b:
    raise ValueError(f"pad_batch: batch has {b} rows, more than rows={rows}")
  width = round_up(t, length_multiple)
  if padding_side not in (None, "left", "right"):
    raise ValueError(f"padding_side={padding_side!r}; expected 'left', 'right' or None")
  left = (bool(am[:, -1].all()) and not bool(am[:, 0].all())) if padding_side is None else padding_side == "left"
  out = dict(batch)
  out["input_ids"] = pad_2d(ids, rows, width, pad_id, left)
  out["attention_mask"] = pad_2d(am, rows, width, 0, left)
  pix = batch.get("pixel_values")
  if pix is not None and tile_slots is not None and pix.ndim == 5 and pix.shape[1] < tile_slots:
    out["pixel_values"] = np.pad(pix, ((0, 0), (0, tile_slots - pix.shape[1]), (0, 0), (0, 0), (0, 0)))
  return out


def chunks(items, size):
  for i in range(0, len(items), size):
    yield items[i:i + size]


def pad_rows(rows, pad_id: int = 0, padding_side: str = "right"):
  """Lists of ids -> (input_ids int64[B, T], attention_mask int64[B, T])."""
  if padding_side not in ("left", "right"):
    raise ValueError(f"padding_side={padding_side!r}; expected 'left' or 'right'")
  width = max(map(len, rows))
  ids = np.full((len(rows), width), pad_id, np.int64)
  mask = np.zeros((len(rows), width), np.int64)
  for i, r in enumerate(rows):
    sl = slice(0, len(r)) if padding_side == "right" else slice(width - len(r), width)
    ids[i, sl], mask[i, sl] = r, 1
  return ids, mask
