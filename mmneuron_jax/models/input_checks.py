"""Host-side checks of what a caller passes to `Model.apply` / `generate`, before any jit.

Misuse otherwise ends in NaN logits (token ids past the vocabulary), silent wrap-around (negative
ids), clipped or truncated readouts (Lens positions past the sequence, float positions), a capture
string read letter by letter, or a JAX reshape error far from the cause. Each check names the
argument and the expected shape. `left_padded` makes the padding side a non-issue for `generate`.
"""
import numpy as np

_MEDIA_HW = {"llava_next": 5, "instructblip": 4}  # pixel_values rank: [B, tiles, 3, H, W] / [B, 3, H, W]


def capture_names(capture) -> tuple:
  """A module name or a sequence of them -> tuple of names."""
  if isinstance(capture, str):
    return (capture,)
  return tuple(capture or ())


def _vocab(config: dict) -> int | None:
  text = config.get("text_config") or config
  return text.get("vocab_size") or config.get("vocab_size")


def _shape(batch, key):
  v = batch.get(key)
  return None if v is None else tuple(np.shape(v))


def check_batch(model, batch: dict) -> None:
  """ValueError naming the argument when the batch's token ids, mask or images have the wrong shape
  or values for this model."""
  if "input_ids" not in batch:
    raise ValueError("batch: no 'input_ids' (int[B, T] token ids)")
  ids = np.asarray(batch["input_ids"])
  if ids.ndim != 2:
    raise ValueError(f"batch['input_ids'] has shape {ids.shape}; expected int[B, T] (add the batch dimension: "
                     "ids[None])")
  if ids.dtype.kind not in "iu":
    raise ValueError(f"batch['input_ids'] has dtype {ids.dtype}; expected integer token ids")
  vocab = _vocab(model.config)
  if ids.size and ids.min() < 0:
    raise ValueError(f"batch['input_ids'] holds negative token id {int(ids.min())}; ids must be in [0, {vocab})")
  if vocab and ids.size and ids.max() >= vocab:
    raise ValueError(f"batch['input_ids'] holds token id {int(ids.max())} >= the vocabulary size {vocab}")
  mask = _shape(batch, "attention_mask")
  if mask is not None and mask != ids.shape:
    raise ValueError(f"batch['attention_mask'] has shape {mask}; expected {ids.shape} (the shape of input_ids)")
  rank = _MEDIA_HW.get(model.family)
  pixels = _shape(batch, "pixel_values")
  if rank and pixels is not None and "feature_index" not in batch:
    vision = model.config.get("vision_config") or {}
    size = vision.get("image_size")
    want = f"float[B, {'tiles, ' if rank == 5 else ''}3, {size}, {size}]"
    if len(pixels) != rank or (size and pixels[-2:] != (size, size)):
      raise ValueError(f"batch['pixel_values'] has shape {pixels}; expected {want} "
                       "(build batches with the family's inputs builder, data/inputs/<family>.py)")


def check_lens(lens, batch: dict) -> None:
  """ValueError when Lens positions are not integers in [-1, T) of shape [B, P]."""
  if lens is None:
    return
  pos = np.asarray(lens.positions)
  B, T = np.shape(batch["input_ids"])
  if pos.dtype.kind not in "iu":
    raise ValueError(f"Lens.positions has dtype {pos.dtype}; expected integer token indices (int32[B, P])")
  if pos.ndim != 2 or pos.shape[0] != B:
    raise ValueError(f"Lens.positions has shape {pos.shape}; expected int32[B={B}, P]")
  if pos.size and (pos.max() >= T or pos.min() < -1):
    raise ValueError(f"Lens.positions holds {int(pos.max()) if pos.max() >= T else int(pos.min())}; positions must "
                     f"be in [0, {T}) (T = the sequence length; -1 = padding)")


def left_padded(batch: dict) -> dict:
  """A raw batch with right padding (each attention_mask row ones then zeros) moved to the left;
  left-padded or unpadded batches are returned unchanged. Every [B, T] array is rolled with it."""
  mask = batch.get("attention_mask")
  if mask is None or "feature_index" in batch:
    return batch
  mask = np.asarray(mask)
  if mask.ndim != 2 or bool(np.all(mask[:, -1])):
    return batch
  B, T = mask.shape
  lengths = mask.astype(bool).sum(1)
  if not all(bool(mask[b, :n].all()) for b, n in enumerate(lengths)):
    return batch  # neither right- nor left-padded: generate refuses it
  shift = T - lengths
  out = dict(batch)
  for key, v in batch.items():
    if v is not None and np.ndim(v) >= 2 and np.shape(v)[:2] == (B, T):
      a = np.asarray(v)
      out[key] = np.stack([np.roll(a[b], int(shift[b]), axis=0) for b in range(B)])
  return out
