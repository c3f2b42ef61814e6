"""A learnable synthetic five-domain VQA set: every answer follows from the image, and each domain
needs its own visual skill, at the resolution of the tiny demo models (LLaVA-NeXT sees 28-56 px):

- documents: read the large glyph printed on a page (one of GLYPHS) among faint text lines;
- medical: count the bright lesions in a greyscale scan (1-4, choices A-D in a fixed order);
- auto-driving: the colour of the car ahead on the road (CAR_COLORS);
- remote-sensing: the land cover seen from above (LAND: forest / wheat / water / houses);
- common-scenes: the colour or the shape of the object on a table (SHAPES, OBJECT_COLORS).

Sample i of (domain, split) depends only on (seed, domain, split, i): the 'train' and 'val' splits
come from separate random streams and share no image (`tests/test_demo_skills.py` checks the bytes).
Extends `data/demo.py` (same drawing helpers and record layout); its sets are unchanged.
"""
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from mmneuron_jax.data.sources.datasets import DOMAINS
from mmneuron_jax.data.synthetic.drawing import COLORS, font, pick, png, sky_and_grass
from mmneuron_jax.data.sources.records import VQARecord

SPLITS = ("train", "val")
GLYPHS = ("o", "x", "l", "t")
CAR_COLORS = ("red", "blue", "yellow", "white")
LAND = ("forest", "wheat", "water", "houses")
SHAPES = ("ball", "box", "triangle")
OBJECT_COLORS = ("red", "blue", "green", "yellow")
COUNTS = ("1", "2", "3", "4")


def _size(rng):
  """Square-ish 200-320 px: every image takes LLaVA-NeXT's 2x2 anyres grid in the demo model."""
  w = int(rng.integers(200, 321))
  return w, int(np.clip(w + rng.integers(-30, 31), 200, 320))


# ---------------------------------------------------------------- documents: read a glyph

def _document(rng, kind: int):
  del kind
  w, h = _size(rng)
  img = Image.new("RGB", (w, h), (int(rng.integers(240, 256)),) * 3)
  draw = ImageDraw.Draw(img)
  for k in range(int(rng.integers(2, 5))):  # faint body text lines above and below the glyph
    y = int(h * (0.06 + 0.05 * k))
    draw.line([(w * 0.1, y), (w * rng.uniform(0.5, 0.9), y)], fill=(190, 190, 190), width=3)
    y = int(h * (0.8 + 0.05 * k))
    draw.line([(w * 0.1, y), (w * rng.uniform(0.5, 0.9), y)], fill=(190, 190, 190), width=3)
  glyph = pick(rng, GLYPHS)
  size = int(min(w, h) * rng.uniform(0.5, 0.6))
  glyph_font = font(size)
  box = draw.textbbox((0, 0), glyph.upper(), font=glyph_font, stroke_width=size // 14)
  x = (w - (box[2] - box[0])) / 2 - box[0] + rng.uniform(-0.05, 0.05) * w
  y = (h - (box[3] - box[1])) / 2 - box[1] + rng.uniform(-0.05, 0.05) * h
  draw.text((x, y), glyph.upper(), fill=(0, 0, 0), font=glyph_font, stroke_width=size // 14, stroke_fill=(0, 0, 0))
  return img, "Which letter is printed in large type on the page?", [glyph], None, {"glyph": glyph}


# ---------------------------------------------------------------- medical: count lesions

def _medical(rng, kind: int):
  del kind
  w, h = _size(rng)
  img = Image.new("L", (w, h), int(rng.integers(5, 20)))
  draw = ImageDraw.Draw(img)
  ax, ay = w * rng.uniform(0.4, 0.46), h * rng.uniform(0.4, 0.46)
  draw.ellipse([w / 2 - ax, h / 2 - ay, w / 2 + ax, h / 2 + ay], fill=int(rng.integers(90, 120)))
  n = int(rng.integers(1, 5))
  cells = rng.choice(4, size=n, replace=False)  # one lesion per quadrant of the body
  for c in cells:
    sx, sy = (-1 if c % 2 == 0 else 1), (-1 if c < 2 else 1)
    x, y = w / 2 + sx * ax * rng.uniform(0.4, 0.55), h / 2 + sy * ay * rng.uniform(0.4, 0.55)
    r = min(w, h) * rng.uniform(0.08, 0.1)
    draw.ellipse([x - r, y - r, x + r, y + r], fill=int(rng.integers(225, 256)))
  arr = np.asarray(img, np.float32) + rng.normal(0, 6, (h, w))
  img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1))
  answer = "ABCD"[COUNTS.index(str(n))]
  return img, "How many bright lesions are visible?", [answer], list(COUNTS), {"lesions": n}


# ---------------------------------------------------------------- auto-driving: car colour

def _driving(rng, kind: int):
  del kind
  w, h = _size(rng)
  hy = int(h * rng.uniform(0.3, 0.4))
  img, draw = sky_and_grass(rng, h, w, hy)
  cx = w / 2 + rng.uniform(-0.05, 0.05) * w
  top, bottom = w * 0.05, w * rng.uniform(0.45, 0.55)
  draw.polygon([(cx - top, hy), (cx + top, hy), (cx + bottom, h), (cx - bottom, h)], fill=(105, 105, 110))
  color = pick(rng, CAR_COLORS)
  cw = w * rng.uniform(0.38, 0.46)
  ch, xc, yb = 0.6 * cw, cx + rng.uniform(-0.05, 0.05) * w, h * rng.uniform(0.75, 0.85)
  draw.rectangle([xc - cw / 2, yb - ch, xc + cw / 2, yb], fill=COLORS[color], outline=(20, 20, 20), width=2)
  draw.rectangle([xc - cw * 0.35, yb - ch * 0.9, xc + cw * 0.35, yb - ch * 0.55], fill=(60, 70, 90))
  for s in (-1, 1):
    draw.rectangle([xc + s * cw * 0.35 - cw * 0.08, yb - 2, xc + s * cw * 0.35 + cw * 0.08, yb + 8], fill=(10, 10, 10))
  return img, "What colour is the car ahead?", [color], None, {"car": color}


# ---------------------------------------------------------------- remote sensing: land cover

def _remote(rng, kind: int):
  del kind
  w, h = _size(rng)
  land = pick(rng, LAND)
  base = {"forest": (35, 85, 40), "wheat": (205, 180, 90), "water": (40, 80, 150), "houses": (150, 150, 145)}[land]
  arr = np.empty((h, w, 3), np.float32)
  arr[:] = base
  arr += rng.normal(0, 8, (h, w, 1))
  img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
  draw = ImageDraw.Draw(img)
  if land == "forest":  # tree crowns
    for _ in range(60):
      x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(6, 14)
      draw.ellipse([x - r, y - r, x + r, y + r], fill=(20, int(rng.integers(60, 110)), 25))
  elif land == "wheat":  # furrows
    step = int(rng.integers(12, 20))
    for y in range(0, h, step):
      draw.line([(0, y), (w, y)], fill=(170, 140, 60), width=3)
  elif land == "water":  # ripples
    for _ in range(12):
      x, y = rng.uniform(0, w), rng.uniform(0, h)
      draw.line([(x, y), (x + rng.uniform(15, 40), y)], fill=(90, 130, 190), width=2)
  else:  # roofs on a grid
    cell = int(rng.integers(36, 52))
    for gy in range(0, h - 10, cell):
      for gx in range(0, w - 10, cell):
        s = int(cell * 0.6)
        draw.rectangle([gx + 4, gy + 4, gx + 4 + s, gy + 4 + s], fill=((185, 60, 50), (220, 220, 220))[(gx + gy) % 2])
  if rng.integers(2):  # a road across, in every land type
    y = int(rng.uniform(0.2, 0.8) * h)
    draw.line([(0, y), (w, y)], fill=(120, 120, 120), width=6)
  return img, "What kind of land is shown in this aerial image?", [land], None, {"land": land}


# ---------------------------------------------------------------- common scenes: colour / shape

WALLS = ((235, 225, 205), (200, 200, 205), (215, 235, 215))
FLOORS = ((150, 110, 70), (120, 120, 120))


def _common(rng, kind: int):
  w, h = _size(rng)
  split = int(h * rng.uniform(0.35, 0.5))
  arr = np.empty((h, w, 3), np.float32)
  arr[:split] = pick(rng, WALLS)
  arr[split:] = pick(rng, FLOORS)
  img = Image.fromarray(arr.astype(np.uint8))
  draw = ImageDraw.Draw(img)
  shape, color = pick(rng, SHAPES), pick(rng, OBJECT_COLORS)
  r = min(w, h) * rng.uniform(0.25, 0.32)
  x, y = w / 2 + rng.uniform(-0.08, 0.08) * w, h * rng.uniform(0.5, 0.6)
  fill, dark = COLORS[color], tuple(int(v * 0.6) for v in COLORS[color])
  if shape == "ball":
    draw.ellipse([x - r, y - r, x + r, y + r], fill=fill, outline=dark, width=3)
  elif shape == "box":
    draw.rectangle([x - r, y - r, x + r, y + r], fill=fill, outline=dark, width=3)
  else:
    draw.polygon([(x, y - r), (x + r, y + r), (x - r, y + r)], fill=fill, outline=dark, width=3)
  if kind % 2 == 0:
    q, a = "What colour is the object?", color
  else:
    q, a = "What shape is the object?", shape
  return img, q, [a], None, {"shape": shape, "color": color}


GENERATORS = {"auto-driving": _driving, "medical": _medical, "remote-sensing": _remote,
              "common-scenes": _common, "documents": _document}


def skills_sample(domain: str, i: int, split: str = "val", seed: int = 0) -> VQARecord:
  """Sample i of `domain` in `split` ('train' | 'val'), a function of (seed, domain, split, i) only."""
  if split not in SPLITS:
    raise ValueError(f"split={split!r}; expected one of {SPLITS}")
  rng = np.random.default_rng([seed, DOMAINS.index(domain), 1000 + SPLITS.index(split), i])
  img, question, answers, choices, facts = GENERATORS[domain](rng, i)
  return VQARecord(id=f"skills-{split}-{domain}-{i:04d}", domain=domain, question=question, answers=answers,
                   image_bytes=png(img), choices=choices, meta={"facts": facts, "split": split})


def skills_records(n_per_domain: int = 16, split: str = "val", seed: int = 0, domains=DOMAINS) -> list:
  """n_per_domain records per domain (`domains` order) of `split`, images as in-memory PNG bytes."""
  return [skills_sample(d, i, split, seed) for d in domains for i in range(n_per_domain)]


def answer_space(domain: str) -> tuple:
  """Every answer the domain's questions can have (a chance-level reference for reports)."""
  return {"documents": GLYPHS, "medical": tuple("ABCD"), "auto-driving": CAR_COLORS, "remote-sensing": LAND,
          "common-scenes": OBJECT_COLORS + SHAPES}[domain]
