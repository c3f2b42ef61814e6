"""Resume fingerprints: a digest per thing the accumulated numbers depend on.

A statistics store records `{field: digest}` (checkpoint content, dtype and policy, records' ids and
content, prompts, positions, batch plan, the statistic's code version); a later run resumes only
when every field matches, and otherwise refuses naming the fields that differ.

    fields = {"checkpoint": checkpoint_digest(path), "records": records_digest(recs), ...}
    fp = combine(fields)
"""
import hashlib
import json
import os
import struct

_SMALL = 64 << 20  # files up to this size are hashed whole; larger ones by size, header and tail
_EDGE = 1 << 20


def digest(obj) -> str:
  """sha256 (16 hex) of the canonical JSON of obj (bytes are hashed directly)."""
  if isinstance(obj, bytes):
    return hashlib.sha256(obj).hexdigest()[:16]
  return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def combine(fields: dict) -> str:
  return digest({k: fields[k] for k in sorted(fields)})


def _file_digest(path: str) -> str:
  h = hashlib.sha256()
  size = os.path.getsize(path)
  h.update(str(size).encode())
  with open(path, "rb") as f:
    if path.endswith(".safetensors") and size >= 8:
      n = struct.unpack("<Q", f.read(8))[0]
      h.update(f.read(min(n, size - 8)))  # names, dtypes, shapes and offsets of every tensor
      f.seek(max(0, size - _EDGE))
      h.update(f.read(_EDGE))
    elif size <= _SMALL:
      for block in iter(lambda: f.read(1 << 22), b""):
        h.update(block)
    else:
      h.update(f.read(_EDGE))
      f.seek(size - _EDGE)
      h.update(f.read(_EDGE))
  return h.hexdigest()[:16]


def checkpoint_digest(path: str) -> str:
  """Digest of a checkpoint directory: every file's name and size, small files (configs,
  tokenizer) whole, safetensors by their header (every tensor's name, dtype, shape, offsets) and
  last MiB. A file, not a directory: the same for that file."""
  if os.path.isfile(path):
    return _file_digest(path)
  parts = {}
  for root, dirs, files in os.walk(path):
    dirs.sort()
    for name in sorted(files):
      if name.startswith("."):
        continue
      full = os.path.join(root, name)
      parts[os.path.relpath(full, path)] = _file_digest(full)
  return digest(parts)


def _bytes_digest(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()[:16]


def image_digest(record) -> str:
  """Digest of a record's image bytes (in memory or the files it names; a missing file: its name)."""
  if getattr(record, "image_bytes", None) is not None:
    return _bytes_digest(record.image_bytes)
  parts = []
  for p in record.image_files():
    try:
      with open(p, "rb") as f:
        parts.append(_bytes_digest(f.read()))
    except OSError:
      parts.append(f"missing:{p}")
  return digest(parts)


def records_digest(records) -> str:
  """Digest of records' ids, domains, questions, answers, choices and image bytes, in order."""
  return digest([[r.id, r.domain, r.question, list(r.answers or []), list(r.choices or []), image_digest(r)]
                 for r in records])


def differing(stored: dict, fields: dict) -> list:
  """Names of the fields whose digests differ (or that only one side has), sorted."""
  return sorted(k for k in set(stored) | set(fields) if stored.get(k) != fields.get(k))
