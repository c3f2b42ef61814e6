"""VQA records: one question about one image (or a row of frames), read from JSONL, CSV or parquet.

A records file has the columns `id`, `domain`, `question`, `answers` and one image source:
`image` (a path, or a list of frame paths), `images` (a list of frame paths) or `image_bytes`
(raw bytes in parquet, base64 text in JSONL/CSV); `choices` is optional. List fields may be real
lists, JSON strings (`'["a", "b"]'`) or '|'-separated strings. Relative image paths are resolved
against `image_root`, else the records file's directory. Other columns land in `meta`.
"""
import base64
import binascii
import dataclasses
import hashlib
import io
import json
import os

from PIL import Image

REQUIRED = ("id", "domain", "question")


@dataclasses.dataclass(frozen=True)
class VQARecord:
  """One VQA sample. Exactly one image source: `image_path`, `image_bytes`, or `image_paths`
  (frames of one scene, joined left to right by `load_image`)."""
  id: str
  domain: str
  question: str
  answers: list = dataclasses.field(default_factory=list)
  image_path: str | None = None
  image_bytes: bytes | None = None
  image_paths: list | None = None
  choices: list | None = None
  meta: dict = dataclasses.field(default_factory=dict)

  def image_files(self) -> list:
    """The image files this record reads ([] for in-memory bytes)."""
    if self.image_paths:
      return list(self.image_paths)
    return [self.image_path] if self.image_path else []


class BadImage(ValueError):
  """An image that is missing or cannot be decoded; the message names the file."""


# ---------------------------------------------------------------- images

def _open(source, name: str) -> Image.Image:
  try:
    with Image.open(source) as im:
      im.load()
      return im.convert("RGB")
  except FileNotFoundError as e:
    raise BadImage(f"image file not found: {name}") from e
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise BadImage(f"corrupt image {name}: {e}") from e


def hconcat(frames: list) -> Image.Image:
  """Frames side by side, left to right, top-aligned on black (equal heights: a plain concat)."""
  width, height = sum(f.width for f in frames), max(f.height for f in frames)
  out = Image.new("RGB", (width, height))
  x = 0
  for f in frames:
    out.paste(f, (x, 0))
    x += f.width
  return out


def load_image(record: VQARecord) -> Image.Image:
  """The record's image as RGB; multi-frame records are joined horizontally (as for LingoQA)."""
  if record.image_bytes is not None:
    return _open(io.BytesIO(record.image_bytes), f"image_bytes of record {record.id}")
  if record.image_paths:
    return hconcat([_open(p, p) for p in record.image_paths])
  if record.image_path:
    return _open(record.image_path, record.image_path)
  raise BadImage(f"record {record.id}: no image (set image_path, image_paths or image_bytes)")


# ---------------------------------------------------------------- parsing

def _is_missing(v) -> bool:
  return v is None or (isinstance(v, float) and v != v) or (isinstance(v, str) and not v.strip())


def parse_list(value, field: str, where: str, split_bar: bool = True) -> list:
  """A list field from a list/array, a JSON list string, or a '|'-separated string."""
  if _is_missing(value):
    return []
  if isinstance(value, str):
    s = value.strip()
    if s.startswith("["):
      try:
        value = json.loads(s)
      except json.JSONDecodeError as e:
        raise ValueError(f"{where}: field '{field}' is not a valid JSON list: {e}") from e
    elif split_bar and "|" in s:
      return [p.strip() for p in s.split("|")]
    else:
      return [s]
  if hasattr(value, "tolist"):  # numpy arrays from parquet
    value = value.tolist()
  if not isinstance(value, (list, tuple)):
    return [str(value)]
  return [str(v) for v in value]


def _parse_bytes(value, where: str) -> bytes:
  if isinstance(value, (bytes, bytearray, memoryview)):
    return bytes(value)
  if isinstance(value, dict) and "bytes" in value:  # HF datasets' image struct
    return bytes(value["bytes"])
  try:
    return base64.b64decode(str(value), validate=True)
  except (binascii.Error, ValueError) as e:
    raise ValueError(f"{where}: field 'image_bytes' is neither bytes nor base64 text: {e}") from e


def _resolve(path: str, root: str) -> str:
  path = os.path.expanduser(str(path))
  return path if os.path.isabs(path) else os.path.join(root, path)


def _plain(v):
  if hasattr(v, "tolist"):
    v = v.tolist()
  return v if isinstance(v, (str, int, float, bool, list, dict)) or v is None else str(v)


def record_from_row(row: dict, where: str, root: str) -> VQARecord:
  """One records-file row -> VQARecord; `where` (file and row) goes into error messages."""
  for f in REQUIRED:
    if f not in row or (f != "question" and _is_missing(row[f])):
      raise ValueError(f"{where}: missing required field '{f}'")
  image_path = image_paths = image_bytes = None
  if not _is_missing(row.get("image_bytes")):
    image_bytes = _parse_bytes(row["image_bytes"], where)
  elif not _is_missing(row.get("images")) or not _is_missing(row.get("image")):
    key = "images" if not _is_missing(row.get("images")) else "image"
    paths = parse_list(row[key], key, where, split_bar=False)
    if len(paths) == 1 and key == "image":
      image_path = _resolve(paths[0], root)
    else:
      image_paths = [_resolve(p, root) for p in paths]
  else:
    raise ValueError(f"{where}: no image field (expected 'image', 'images' or 'image_bytes')")
  choices = parse_list(row.get("choices"), "choices", where) or None
  known = set(REQUIRED) | {"answers", "image", "images", "image_bytes", "choices", "meta"}
  meta = dict(row["meta"]) if isinstance(row.get("meta"), dict) else {}
  meta.update({k: _plain(v) for k, v in row.items() if k not in known})
  question = "" if _is_missing(row["question"]) else str(row["question"])
  return VQARecord(id=str(row["id"]), domain=str(row["domain"]), question=question,
                   answers=parse_list(row.get("answers"), "answers", where), image_path=image_path,
                   image_bytes=image_bytes, image_paths=image_paths, choices=choices, meta=meta)


def _rows(path: str):
  """Yield (where, row dict) from a .jsonl/.json/.csv/.tsv/.parquet file."""
  ext = os.path.splitext(path)[1].lower()
  if ext in (".jsonl", ".ndjson"):
    with open(path, encoding="utf-8") as f:
      for n, line in enumerate(f, 1):
        if line.strip():
          try:
            yield f"{path} line {n}", json.loads(line)
          except json.JSONDecodeError as e:
            raise ValueError(f"{path} line {n}: invalid JSON: {e}") from e
  elif ext == ".json":
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
    data = data.get("records", data) if isinstance(data, dict) else data
    if not isinstance(data, list):
      raise ValueError(f"{path}: expected a JSON list of records (or {{'records': [...]}})")
    for n, row in enumerate(data):
      yield f"{path} record {n}", row
  elif ext in (".csv", ".tsv", ".parquet"):
    import pandas as pd
    if ext == ".parquet":
      df = pd.read_parquet(path)
    else:
      df = pd.read_csv(path, dtype=str, keep_default_na=False, sep="\t" if ext == ".tsv" else ",")
    for n, row in enumerate(df.to_dict("records")):
      yield f"{path} row {n}", row
  else:
    raise ValueError(f"{path}: unsupported records format '{ext}' (use .jsonl, .json, .csv, .tsv or .parquet)")


def read_records(path: str, image_root: str | None = None) -> list:
  """Read a records file (JSONL, JSON list, CSV/TSV or parquet) into VQARecords."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"records file not found: {path}")
  root = image_root or os.path.dirname(os.path.abspath(path))
  return [record_from_row(row, where, root) for where, row in _rows(path)]


def record_to_row(record: VQARecord, base_dir: str | None = None) -> dict:
  """A JSON-able row that `read_records` reads back (paths relative to `base_dir` when inside it)."""

  def rel(p):
    if base_dir:
      r = os.path.relpath(os.path.abspath(p), os.path.abspath(base_dir))
      return p if r.startswith("..") else r
    return p

  row = {"id": record.id, "domain": record.domain, "question": record.question, "answers": list(record.answers)}
  if record.image_bytes is not None:
    row["image_bytes"] = base64.b64encode(record.image_bytes).decode("ascii")
  elif record.image_paths:
    row["images"] = [rel(p) for p in record.image_paths]
  elif record.image_path:
    row["image"] = rel(record.image_path)
  if record.choices:
    row["choices"] = list(record.choices)
  if record.meta:
    row["meta"] = record.meta
  return row


def write_records(records, path: str) -> str:
  """Write records as JSONL (image paths relative to the file's directory when inside it)."""
  base = os.path.dirname(os.path.abspath(path))
  os.makedirs(base, exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    for r in records:
      f.write(json.dumps(record_to_row(r, base), ensure_ascii=False, sort_keys=True) + "\n")
  return path


# ---------------------------------------------------------------- checks and ordering

def image_problem(record: VQARecord, decode: bool = True) -> str | None:
  """Why the record's image cannot be used (naming the file), or None."""
  if record.image_bytes is None and not record.image_files():
    return "no image (no image_path, image_paths or image_bytes)"
  for p in record.image_files():
    if not os.path.isfile(p):
      return f"image file not found: {p}"
  if decode:
    try:
      load_image(record)
    except BadImage as e:
      return str(e)
  return None


def validate(records, decode: bool = True) -> tuple:
  """-> (good records, bad [(id, reason)]): empty question, missing/corrupt image, duplicate id.
  `decode=False` only checks that image files exist."""
  good, bad, seen = [], [], {}
  for i, r in enumerate(records):
    if r.id in seen:
      reason = f"duplicate id (first at position {seen[r.id]})"
    elif not r.question.strip():
      reason = "empty question"
    else:
      reason = image_problem(r, decode)
    seen.setdefault(r.id, i)
    if reason:
      bad.append((r.id, reason))
    else:
      good.append(r)
  return good, bad


def deterministic_shuffle(records, seed: int) -> list:
  """A seed-determined order that depends only on (seed, id): not on Python's hash seed, the
  input order, or which other records are present. Equal ids keep their input order."""
  def key(item):
    i, r = item
    return hashlib.sha256(f"{seed}\x00{r.id}".encode()).digest(), i
  return [r for _, r in sorted(enumerate(records), key=key)]


def by_domain(records, n_per_domain: int | None = None, domains=None) -> dict:
  """domain -> its first `n_per_domain` records (all when None/0), in `domains` order when given
  (domains without records map to []), else in order of first appearance."""
  out = {d: [] for d in domains} if domains is not None else {}
  for r in records:
    if domains is not None and r.domain not in out:
      continue
    bucket = out.setdefault(r.domain, [])
    if not n_per_domain or len(bucket) < n_per_domain:
      bucket.append(r)
  return out
