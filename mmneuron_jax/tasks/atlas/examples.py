"""Top examples in context: the samples of the atlas's top-k lists are read again (a few at a
time, `nn.topk_probe.ColumnProbe`), and each example becomes page data: image tiles with a
heatmap of the neuron over the patches, and the text with its tokens shaded.

Where a token sits in the image (`Layout`):
- LLaVA-NeXT: `vision` token p of a sample is valid tile p // (1 + P), patch p % (1 + P) - 1
  (-1 = CLS); `projector` token p is tile p // P, patch p % P; an `llm` image token's
  `feature_index` names its tile slot and patch (the anyres packing, unpadded; image_newline
  tokens have no patch). Tiles are shown as the vision tower saw them (base tile, then the grid).
- InstructBLIP: `vision` token p is patch p - 1 of the row's image (-1 = CLS); the Q-Former's
  query and text tokens and the LLM's query-output tokens are not spatial (a strip over the tokens).
- Qwen2-VL (merged 2x2 patches, frames), Qwen2-Audio (frames): not mapped yet; the neuron's values
  over the module's tokens are drawn as a strip. LLM text tokens are shaded for every family.
"""
import base64
import functools
import io
import os

import jax
import jax.numpy as jnp
import numpy as np

from mmneuron_jax.models.base import forward
from mmneuron_jax.nn.topk_probe import ColumnProbe
from mmneuron_jax.tasks.atlas.collect import token_ids

MAX_TEXT = 48  # text tokens shown around the top position


def png_data_uri(rgba: np.ndarray) -> str:
  """uint8[H, W, 3|4] -> 'data:image/png;base64,...'."""
  from PIL import Image
  buf = io.BytesIO()
  Image.fromarray(rgba).save(buf, format="PNG")
  return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def heat_rgba(grid: np.ndarray, vmax: float) -> np.ndarray:
  """float[h, w] (NaN = no token) -> uint8[h, w, 4]: orange, alpha rising with value / vmax
  (values <= 0 and NaN transparent)."""
  alpha = np.clip(np.nan_to_num(grid, nan=0.0) / max(vmax, 1e-12), 0.0, 1.0)
  out = np.zeros(grid.shape + (4,), np.uint8)
  out[..., 0], out[..., 1], out[..., 2] = 255, 90, 0
  out[..., 3] = np.round(alpha * 220).astype(np.uint8)
  return out


class Layout:
  """Where each token of each module sits, for one sample of a prepared batch."""

  def __init__(self, model, inputs, prepared: dict, row: int):
    self.model, self.inputs, self.prepared, self.row = model, inputs, prepared, row
    self.tiles, self.slots, self.side = [], [], 0
    cfg = getattr(model.module, "cfg", None)
    if model.family == "llava_next" and "tile_valid" in prepared:
      v = cfg.vision
      self.side, self.patches = v.image_size // v.patch_size, (v.image_size // v.patch_size) ** 2
      image = int(np.flatnonzero(np.asarray(prepared["image_rows"]) == row)[0])
      tile_image = np.asarray(prepared["tile_image"])
      self.slots = [int(s) for s in np.flatnonzero((tile_image == image) & np.asarray(prepared["tile_valid"]))]
    elif model.family == "instructblip" and prepared.get("pixel_values") is not None:
      v = cfg.vision  # one image per row, the EVA tower's patches (+ CLS); the Q-Former's queries are not spatial
      self.side, self.patches = v.image_size // v.patch_size, (v.image_size // v.patch_size) ** 2
      self.slots = [row]
    ids = np.asarray(prepared["input_ids"])[row]
    am = np.asarray(prepared.get("attention_mask", np.ones_like(ids)))[row].astype(bool)
    self.ids = ids[am]
    tok = inputs.tokenizer
    self.words = [w.replace("\u2581", " ").replace("\u0120", " ") for w in tok.convert_ids_to_tokens(self.ids.tolist())]
    fi = prepared.get("feature_index")
    self.feature = np.asarray(fi)[row][am] if fi is not None else None

  @property
  def mapped(self) -> bool:
    return bool(self.slots)

  def spatial(self, module: str) -> bool:
    """Whether `module`'s tokens are image patches this layout can place."""
    return self.mapped and (module == "vision" or (module == "projector" and self.model.family == "llava_next"))

  def tile_rgb(self, slot: int) -> np.ndarray:
    """uint8[H, W, 3] of a tile slot, de-normalised with the image processor's mean / std."""
    proc = self.inputs.image_processor
    x = np.asarray(self.prepared["pixel_values"])[slot].transpose(1, 2, 0)
    x = x * np.asarray(proc.image_std) + np.asarray(proc.image_mean)
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)

  def grids(self, module: str, values: np.ndarray):
    """values float[n] over the sample's tokens of `module` -> {slot: float[side, side]} (NaN where
    no token falls), or None when this family's tokens are not mapped to patches."""
    if not self.mapped:
      return None
    P, side = self.patches, self.side
    grids = {s: np.full(P, np.nan) for s in self.slots}
    if self.spatial(module):
      per = P + 1 if module == "vision" else P
      for p, v in enumerate(values):
        tile, patch = divmod(p, per)
        patch -= per - P
        if patch >= 0 and tile < len(self.slots):
          grids[self.slots[tile]][patch] = v
    elif module == "llm" and self.feature is not None and self.model.family == "llava_next":
      for t, f in enumerate(self.feature[:len(values)]):
        slot, patch = divmod(int(f), P)
        if f >= 0 and slot in grids:
          grids[slot][patch] = values[t]
    else:
      return None
    return {s: g.reshape(side, side) for s, g in grids.items()}

  def where(self, module: str, position: int) -> str:
    """A short description of a top position."""
    if module == "llm":
      if self.feature is not None and position < len(self.feature) and self.feature[position] >= 0:
        if self.mapped and self.model.family == "llava_next":
          slot, patch = divmod(int(self.feature[position]), self.patches)
          if slot in self.slots:
            return f"image token: tile {self.slots.index(slot)}, patch ({patch // self.side}, {patch % self.side})"
        return "image token"
      return f"text token {self.words[position]!r}" if position < len(self.words) else f"token {position}"
    if self.spatial(module):
      per = self.patches + (1 if module == "vision" else 0)
      tile, patch = divmod(position, per)
      patch -= per - self.patches
      return f"tile {tile}, CLS" if patch < 0 else f"tile {tile}, patch ({patch // self.side}, {patch % self.side})"
    return f"{module} token {position}"

  def text(self, values: np.ndarray, position: int):
    """[[word, value], ...] of up to MAX_TEXT text tokens around `position` (each run of image
    tokens collapsed into one ['[image]', None])."""
    entries = []  # (first position, word, value)
    for t in range(len(self.words)):
      if self.feature is not None and self.feature[t] >= 0:
        if not entries or entries[-1][1] != "[image]":
          entries.append((t, "[image]", None))
        continue
      entries.append((t, self.words[t], round(float(values[t]), 4) if t < len(values) else None))
    at = max([i for i, e in enumerate(entries) if e[0] <= position] + [0])
    lo = max(0, min(at - MAX_TEXT // 2, len(entries) - MAX_TEXT))
    return [[w, v] for _, w, v in entries[lo:lo + MAX_TEXT]]


def _columns_forward(module, params, batch, probes):
  return forward(module, params, batch, probe=probes).probe


def examples(model, params, inputs, batcher, targets: dict, totals: dict, image_dir: str,
             image_url: str = "../img") -> dict:
  """-> {module: {neuron s: {group g: [example dict, ...]}}} for every filled top-k slot (samples
  rebuilt by `batcher`, as in the collect step), rendering
  the samples' tiles to `image_dir/s<sample>_t<tile>.png` (once each)."""
  from PIL import Image
  os.makedirs(image_dir, exist_ok=True)
  fn = jax.jit(functools.partial(_columns_forward, model.module))
  wanted = sorted({int(s) for m in targets for s in np.asarray(totals[f"sample/{m}"]).ravel() if s >= 0})
  out = {m: {} for m in targets}
  vmax = {m: np.maximum(np.max(np.where(np.isfinite(totals[f"value/{m}"]), totals[f"value/{m}"], 0), axis=(1, 2)),
                        1e-12) for m in targets}
  for start in range(0, len(wanted), batcher.batch_size):
    ids = wanted[start:start + batcher.batch_size]
    prepared, _, sid = batcher(ids)
    sample_of, _ = token_ids(model, prepared, sid)
    probes = {m: ColumnProbe(jnp.asarray(t.cols)) for m, t in targets.items()}
    acts = {m: np.asarray(v) for m, v in fn(params, model.device_batch(prepared), probes).items()}  # [L, N, K]
    for row, s in enumerate(ids):
      layout = Layout(model, inputs, prepared, row)
      tiles = []
      for i, slot in enumerate(layout.slots):
        name = f"s{s}_t{i}.png"
        if not os.path.exists(os.path.join(image_dir, name)):
          Image.fromarray(layout.tile_rgb(slot)).save(os.path.join(image_dir, name))
        tiles.append((slot, f"{image_url}/{name}"))
      for m, t in targets.items():
        mine = np.asarray(sample_of[m]).reshape(-1) == s
        sample_tot = np.asarray(totals[f"sample/{m}"])
        for n, g, r in zip(*np.nonzero(sample_tot == s)):
          values = acts[m][t.layer[n], mine, t.col[n]]
          position = int(totals[f"position/{m}"][n, g, r])
          ex = {"rank": int(r), "value": round(float(totals[f"value/{m}"][n, g, r]), 5), "sample": int(s),
                "record": str(batcher.record(s).id), "position": position, "where": layout.where(m, position)}
          grids = layout.grids(m, values)
          if grids is not None:
            ex["tiles"] = [{"src": src, "heat": png_data_uri(heat_rgba(grids[slot], vmax[m][n]))}
                           for slot, src in tiles]
          else:
            ex["strip"] = png_data_uri(heat_rgba(values[None], vmax[m][n]))
          if m == "llm":
            ex["text"] = layout.text(values, position)
          out[m].setdefault(int(n), {}).setdefault(int(g), []).append(ex)
  for m in out:
    for n in out[m]:
      for g in out[m][n]:
        out[m][n][g].sort(key=lambda e: e["rank"])
  return out
