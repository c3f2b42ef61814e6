"""LLaVA-NeXT anyres packing as host-side index arithmetic.

HF packs each image's tile features by reshaping, unpadding and appending `image_newline`
per row. The same result is a gather: for each image token, the flat index of the feature
row it receives in `concat([tile_features.reshape(N*P, D), image_newline[None]])`.
Computing the index on the host keeps the jitted forward shape-static.
"""
import numpy as np


def select_best_resolution(size_hw, pinpoints):
  """The (h, w) of `pinpoints` that keeps most of the image and wastes least (HF's rule)."""
  oh, ow = int(size_hw[0]), int(size_hw[1])
  best, best_eff, best_waste = None, 0, float("inf")
  for h, w in pinpoints:
    scale = min(w / ow, h / oh)
    eff = min(int(ow * scale) * int(oh * scale), ow * oh)
    waste = w * h - eff
    if eff > best_eff or (eff == best_eff and waste < best_waste):
      best, best_eff, best_waste = (h, w), eff, waste
  return best


def grid_shape(size_hw, pinpoints, tile_size):
  """Tiles (rows, cols) the image is cut into."""
  h, w = select_best_resolution(size_hw, pinpoints)
  return h // tile_size, w // tile_size


def num_tiles(size_hw, pinpoints, tile_size):
  """Tiles fed to the vision tower for one image: the base image plus the grid."""
  rows, cols = grid_shape(size_hw, pinpoints, tile_size)
  return 1 + rows * cols


def unpad_window(height, width, size_hw):
  """Rows [r0, r1) and cols [c0, c1) of a (height, width) feature map that hold the image."""
  oh, ow = int(size_hw[0]), int(size_hw[1])
  if ow / oh > width / height:
    new_h = int(round(oh * (width / ow), 7))
    pad = (height - new_h) // 2
    return pad, height - pad, 0, width
  new_w = int(round(ow * (height / oh), 7))
  pad = (width - new_w) // 2
  return 0, height, pad, width - pad


def image_feature_order(size_hw, pinpoints, tile_size, side, first_tile, newline_index):
  """int64[n] flat feature indices (tile * side**2 + patch) in HF's packed order, for one image.

  side: patches per tile side; first_tile: flat index of this image's base tile.
  """
  per_tile = side * side
  base = first_tile * per_tile + np.arange(per_tile)
  rows, cols = grid_shape(size_hw, pinpoints, tile_size)
  if rows * cols == 0:
    return np.concatenate([base, [newline_index]])
  r0, r1, c0, c1 = unpad_window(rows * side, cols * side, size_hw)
  r = np.arange(r0, r1)[:, None]
  c = np.arange(c0, c1)[None, :]
  tile = 1 + (r // side) * cols + (c // side)
  flat = (first_tile + tile) * per_tile + (r % side) * side + (c % side)
  flat = np.concatenate([flat, np.full((flat.shape[0], 1), newline_index)], axis=1)
  return np.concatenate([base, flat.reshape(-1)])


def feature_index(input_ids, image_token_id, image_sizes, pinpoints, tile_size, side, tiles_per_image):
  """int32[B, T]: for each image token the row of the packed feature table, else -1.

  tiles_per_image int[I]: tile slots each image occupies in the flattened pixel batch
  (the padded tile count for 5-D pixel_values). Raises if token and feature counts differ.
  """
  input_ids = np.asarray(input_ids)
  slots = np.asarray(tiles_per_image)
  starts = np.concatenate([[0], np.cumsum(slots)[:-1]])
  newline = int(slots.sum()) * side * side
  order = [image_feature_order(s, pinpoints, tile_size, side, int(f), newline)
           for s, f in zip(np.asarray(image_sizes), starts)]
  order = np.concatenate(order) if order else np.zeros((0,), np.int64)
  is_image = input_ids == image_token_id
  if int(is_image.sum()) != len(order):
    raise ValueError(f"Image features and image tokens do not match: {int(is_image.sum())} image tokens "
                     f"in input_ids, {len(order)} features from image_sizes={np.asarray(image_sizes).tolist()}")
  out = np.full(input_ids.shape, -1, np.int32)
  out[is_image] = order
  return out


def image_rows(input_ids, image_token_id, image_sizes, pinpoints, tile_size, side):
  """int32[I]: the batch row holding each image's tokens (images fill image tokens row-major)."""
  rows_of_tokens = np.nonzero(np.asarray(input_ids) == image_token_id)[0]
  lengths = [len(image_feature_order(s, pinpoints, tile_size, side, 0, -1)) for s in np.asarray(image_sizes)]
  starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int)
  return rows_of_tokens[starts].astype(np.int32) if len(lengths) else np.zeros((0,), np.int32)
