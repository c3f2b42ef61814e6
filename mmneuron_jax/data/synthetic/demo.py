"""A deterministic synthetic five-domain VQA set, drawn with numpy + PIL from a seed.

Each domain looks different and every answer follows from the generator:
- documents: white pages with a title, lines of black text and a page number.
- auto-driving: sky, grass, a grey road trapezoid with lane lines, coloured car boxes.
- remote-sensing: an aerial grid of green/brown fields, maybe roads, a pond, buildings.
- medical: a dark greyscale scan with a noisy body ellipse and bright lesions (choices A-D).
- common-scenes: coloured balls and boxes on a wall/floor background.
Sizes vary between 200 and 500 pixels per side. Sample i of a domain depends only on
(seed, domain, i), so the set is bit-identical across runs and prefixes of larger sets.
"""
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from mmneuron_jax.data.sources.datasets import DOMAINS
from mmneuron_jax.data.sources.records import VQARecord, write_records
from mmneuron_jax.data.synthetic.drawing import COLORS, font, pick, png, sky_and_grass

CAR_COLORS = ("red", "blue", "yellow", "white", "black")
OBJECT_COLORS = ("red", "blue", "green", "yellow", "orange", "purple")
TITLES = ("INVOICE", "REPORT", "MEMO", "LETTER", "RECEIPT", "AGENDA", "MINUTES", "SUMMARY", "NOTICE", "BUDGET")
WORDS = ("the", "total", "amount", "due", "date", "account", "please", "remit", "payment", "within", "days",
         "of", "receipt", "meeting", "committee", "review", "annual", "results", "sales", "office", "company",
         "project", "budget", "approved", "item", "number", "signed", "director", "department", "research",
         "report", "summary", "data", "table", "figure", "page", "section", "contract", "terms", "and", "for",
         "to", "with", "by", "on", "in", "is", "was", "will", "be")
REGIONS = ("upper left", "upper right", "lower left", "lower right")


def _letter_question(rng, question: str, options, correct: str):
  order = rng.permutation(len(options))
  choices = [options[k] for k in order]
  return question, ["ABCD"[choices.index(correct)]], choices


# ---------------------------------------------------------------- documents

def _document(rng, kind: int):
  w = int(rng.integers(200, 381))
  h = int(rng.integers(max(w + 20, 300), 501))
  paper = int(rng.integers(246, 256))
  img = Image.new("RGB", (w, h), (paper,) * 3)
  draw = ImageDraw.Draw(img)
  margin, tsize, bsize = int(rng.integers(12, 25)), int(rng.integers(18, 25)), int(rng.integers(10, 14))
  title = pick(rng, TITLES)
  draw.text((margin, margin), title, fill=(0, 0, 0), font=font(tsize))
  body, spacing = font(bsize), bsize + 5
  y = margin + tsize + 14
  fit = (h - y - margin - 2 * spacing) // spacing
  n_lines = int(rng.integers(3, max(4, min(14, fit) + 1)))
  for _ in range(n_lines):
    limit, line = (w - 2 * margin) * rng.uniform(0.5, 1.0), []
    while True:
      word = pick(rng, WORDS)
      if line and body.getlength(" ".join(line + [word])) > limit:
        break
      line.append(word)
    draw.text((margin, y), " ".join(line), fill=(15, 15, 15), font=body)
    y += spacing
  page = int(rng.integers(1, 20))
  draw.text((w // 2 - 4, h - margin - bsize), str(page), fill=(0, 0, 0), font=body)
  qa = [("What is the title of the document?", [title.lower()]), ("What is the page number?", [str(page)]),
        ("How many lines of text are below the title?", [str(n_lines)])][kind % 3]
  return img, qa[0], qa[1], None, {"title": title, "lines": n_lines, "page": page}


# ---------------------------------------------------------------- auto-driving

def _driving(rng, kind: int):
  w = int(rng.integers(320, 501))
  h = int(rng.integers(200, min(w - 60, 400) + 1))
  hy = int(h * rng.uniform(0.35, 0.5))
  img, draw = sky_and_grass(rng, h, w, hy)
  cx = w / 2 + rng.uniform(-0.08, 0.08) * w
  top, bottom = w * rng.uniform(0.03, 0.06), w * rng.uniform(0.45, 0.65)
  half = lambda t: top + t * (bottom - top)
  y_at = lambda t: hy + t * (h - hy)
  draw.polygon([(cx - top, hy), (cx + top, hy), (cx + bottom, h), (cx - bottom, h)], fill=(105, 105, 110))
  for s in (-1, 1):
    draw.line([(cx + s * top, hy), (cx + s * bottom, h)], fill=(240, 240, 240), width=3)
  for t0 in np.arange(0.05, 1.0, 0.14):
    t1 = t0 + 0.06
    draw.polygon([(cx - 1 - 3 * t0, y_at(t0)), (cx + 1 + 3 * t0, y_at(t0)), (cx + 1 + 3 * t1, y_at(t1)),
                  (cx - 1 - 3 * t1, y_at(t1))], fill=(245, 245, 245))
  n = [int(rng.integers(0, 5)), int(rng.integers(1, 5)), int(rng.integers(0, 2)) * int(rng.integers(1, 4))][kind % 3]
  slots = np.sort(rng.choice([0.15, 0.3, 0.45, 0.6, 0.76, 0.92], size=n, replace=False))
  lane, colors = float(rng.choice([-1.0, 1.0])), []
  for t in slots:  # far to near; consecutive cars alternate lanes
    color = pick(rng, CAR_COLORS)
    colors.append(color)
    cw = 0.35 * half(t)
    ch, xc, yb = 0.6 * cw, cx + lane * 0.5 * half(t), y_at(t)
    draw.rectangle([xc - cw / 2, yb - 2, xc + cw / 2, yb + 2], fill=(50, 50, 55))
    draw.rectangle([xc - cw / 2, yb - ch, xc + cw / 2, yb - 2], fill=COLORS[color], outline=(20, 20, 20))
    draw.rectangle([xc - cw * 0.35, yb - ch * 0.92, xc + cw * 0.35, yb - ch * 0.55], fill=(60, 70, 90))
    for s in (-1, 1):
      draw.rectangle([xc + s * cw * 0.42 - cw * 0.07, yb - 3, xc + s * cw * 0.42 + cw * 0.07, yb + 2], fill=(10, 10, 10))
    lane = -lane
  if kind % 3 == 0:
    q, a = "How many cars are there?", str(n)
  elif kind % 3 == 1:
    q, a = "What colour is the nearest car?", colors[-1]
  else:
    q, a = "Are there any cars on the road?", "yes" if n else "no"
  return img, q, [a], None, {"cars": n, "colors": colors}


# ---------------------------------------------------------------- remote-sensing

FIELDS = np.array([[86, 130, 60], [110, 150, 70], [140, 120, 80], [160, 140, 90], [120, 100, 60], [165, 165, 100]])
ROOFS = ((185, 60, 50), (205, 205, 205), (150, 90, 70))


def _remote(rng, kind: int):
  w = int(rng.integers(256, 501))
  h = int(np.clip(w + rng.integers(-40, 41), 200, 500))
  cell = int(rng.integers(28, 65))
  gy, gx = -(-h // cell), -(-w // cell)
  tiles = FIELDS[rng.integers(0, len(FIELDS), (gy, gx))]
  arr = np.repeat(np.repeat(tiles, cell, 0), cell, 1)[:h, :w].astype(np.float32)
  arr += rng.normal(0, 6, (h, w, 3))
  img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
  draw = ImageDraw.Draw(img)
  has_road, has_water = bool(rng.integers(2)), bool(rng.integers(2))
  if has_road:
    for _ in range(int(rng.integers(1, 3))):
      width = int(rng.integers(5, 9))
      if rng.integers(2):
        y = cell * int(rng.integers(1, gy))
        draw.line([(0, y), (w, y)], fill=(150, 150, 150), width=width)
      else:
        x = cell * int(rng.integers(1, gx))
        draw.line([(x, 0), (x, h)], fill=(150, 150, 150), width=width)
  if has_water:
    px, py, rx, ry = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h, rng.uniform(20, 50), rng.uniform(15, 40)
    draw.ellipse([px - rx, py - ry, px + rx, py + ry], fill=(40, 80, 150))
  n = int(rng.integers(0, 7))
  cells = rng.choice(gy * gx, size=min(n, gy * gx), replace=False)
  for c in cells:
    size = int(rng.integers(8, min(18, cell - 10) + 1))
    x0 = (c % gx) * cell + int(rng.integers(5, cell - size - 4))
    y0 = (c // gx) * cell + int(rng.integers(5, cell - size - 4))
    x0, y0 = min(x0, w - size - 4), min(y0, h - size - 4)
    draw.rectangle([x0 + 2, y0 + 2, x0 + size + 2, y0 + size + 2], fill=(40, 40, 35))
    draw.rectangle([x0, y0, x0 + size, y0 + size], fill=pick(rng, ROOFS))
  qa = [("Is there a road?", "yes" if has_road else "no"),
        ("Is there water in the image?", "yes" if has_water else "no"),
        ("How many buildings are there?", str(len(cells)))][kind % 3]
  return img, qa[0], [qa[1]], None, {"road": has_road, "water": has_water, "buildings": len(cells)}


# ---------------------------------------------------------------- medical

def _medical(rng, kind: int):
  w = int(rng.integers(224, 481))
  h = int(np.clip(w + rng.integers(-30, 31), 200, 500))
  img = Image.new("L", (w, h), int(rng.integers(5, 20)))
  draw = ImageDraw.Draw(img)
  ax, ay = w * rng.uniform(0.36, 0.44), h * rng.uniform(0.38, 0.45)
  draw.ellipse([w / 2 - ax, h / 2 - ay, w / 2 + ax, h / 2 + ay], fill=int(rng.integers(100, 130)))
  for s in (-1, 1):
    lx = w / 2 + s * ax * 0.45
    draw.ellipse([lx - ax * 0.35, h / 2 - ay * 0.7, lx + ax * 0.35, h / 2 + ay * 0.7], fill=int(rng.integers(45, 70)))
  n = 1 if kind % 2 == 0 else int(rng.integers(1, 5))
  regions = [REGIONS[k] for k in np.sort(rng.choice(4, size=n, replace=False))]
  for region in regions:
    sx, sy = (-1 if "left" in region else 1), (-1 if "upper" in region else 1)
    x, y = w / 2 + sx * ax * rng.uniform(0.3, 0.6), h / 2 + sy * ay * rng.uniform(0.25, 0.5)
    r = float(rng.uniform(5, 11))
    draw.ellipse([x - r, y - r * rng.uniform(0.7, 1.0), x + r, y + r], fill=int(rng.integers(215, 250)))
  arr = np.asarray(img, np.float32) + rng.normal(0, 8, (h, w))
  img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1))
  if kind % 2 == 0:
    q, a, c = _letter_question(rng, "Where is the bright lesion located?", REGIONS, regions[0])
  else:
    q, a, c = _letter_question(rng, "How many bright lesions are visible?", ("1", "2", "3", "4"), str(n))
  return img, q, a, c, {"lesions": regions}


# ---------------------------------------------------------------- common scenes

WALLS = ((235, 225, 205), (200, 200, 205), (190, 215, 235), (215, 235, 200), (245, 240, 235))
FLOORS = ((150, 110, 70), (120, 120, 120), (90, 140, 80), (200, 180, 150))


def _common(rng, kind: int):
  w, h = int(rng.integers(200, 501)), int(rng.integers(200, 501))
  split = int(h * rng.uniform(0.4, 0.65))
  shade = np.linspace(1.0, 0.85, split)[:, None, None]
  arr = np.empty((h, w, 3), np.float32)
  arr[:split] = shade * np.array(pick(rng, WALLS))
  arr[split:] = np.array(pick(rng, FLOORS))
  img = Image.fromarray(arr.astype(np.uint8))
  draw = ImageDraw.Draw(img)
  kind %= 3
  if kind == 0:
    kinds = ["ball"] + ["box"] * int(rng.integers(0, 3))
  else:
    kinds = ["ball"] * int(rng.integers(1, 4)) + ["box"] * int(rng.integers(0, 3))
  cols, rows = 3, 2
  cw, ch = w / cols, (h - split * 0.6) / rows
  slots = rng.choice(cols * rows, size=len(kinds), replace=False)
  colors = []
  for k, slot in zip(kinds, slots):
    color = pick(rng, OBJECT_COLORS)
    colors.append(color)
    r = 0.3 * min(cw, ch) * rng.uniform(0.8, 1.0)
    x = (slot % cols + 0.5) * cw + rng.uniform(-0.1, 0.1) * cw
    y = split * 0.6 + (slot // cols + 0.5) * ch
    dark = tuple(int(v * 0.6) for v in COLORS[color])
    if k == "ball":
      draw.ellipse([x - r, y - r, x + r, y + r], fill=COLORS[color], outline=dark, width=2)
      draw.ellipse([x - r * 0.5, y - r * 0.6, x - r * 0.2, y - r * 0.3], fill=(250, 250, 250))
    else:
      draw.rectangle([x - r, y - r * 0.8, x + r, y + r * 0.8], fill=COLORS[color], outline=dark, width=2)
  balls = kinds.count("ball")
  qa = [("What colour is the ball?", colors[0]), ("How many balls are there?", str(balls)),
        ("How many objects are there?", str(len(kinds)))][kind]
  return img, qa[0], [qa[1]], None, {"objects": [[k, c] for k, c in zip(kinds, colors)]}


GENERATORS = {"auto-driving": _driving, "medical": _medical, "remote-sensing": _remote,
              "common-scenes": _common, "documents": _document}


SPLITS = ("train", "val")


def demo_sample(domain: str, i: int, seed: int = 0, split: str = "train") -> VQARecord:
  """Sample i of `domain` in `split`, a function of (seed, domain, i, split) only. The splits are
  disjoint: their own random streams and ids (`demo-<domain>-<i>` for train, as before splits
  existed; `demo-<domain>-val-<i>` for val)."""
  if split not in SPLITS:
    raise ValueError(f"demo split={split!r}; expected one of {SPLITS}")
  key = [seed, DOMAINS.index(domain), i] + ([] if split == "train" else [SPLITS.index(split)])
  rng = np.random.default_rng(key)
  img, question, answers, choices, facts = GENERATORS[domain](rng, i)
  rid = f"demo-{domain}-{i:03d}" if split == "train" else f"demo-{domain}-{split}-{i:03d}"
  return VQARecord(id=rid, domain=domain, question=question, answers=answers,
                   image_bytes=png(img), choices=choices, meta={"facts": facts})


def demo_records(n_per_domain: int = 8, seed: int = 0, split: str = "train") -> list:
  """n_per_domain synthetic records per domain (DOMAINS order) of `split` ('train' | 'val'), images
  as in-memory PNG bytes."""
  return [demo_sample(d, i, seed, split) for d in DOMAINS for i in range(n_per_domain)]


def write_demo(out_dir: str, n_per_domain: int = 8, seed: int = 0) -> str:
  """Write images/<id>.png and records.jsonl (readable by `read_records`); returns the jsonl path."""
  img_dir = os.path.join(out_dir, "images")
  os.makedirs(img_dir, exist_ok=True)
  on_disk = []
  for r in demo_records(n_per_domain, seed):
    path = os.path.join(img_dir, f"{r.id}.png")
    with open(path, "wb") as f:
      f.write(r.image_bytes)
    on_disk.append(VQARecord(id=r.id, domain=r.domain, question=r.question, answers=r.answers,
                             image_path=path, choices=r.choices, meta=r.meta))
  return write_records(on_disk, os.path.join(out_dir, "records.jsonl"))
