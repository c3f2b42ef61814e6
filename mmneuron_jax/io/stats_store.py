"""Crash-safe store for accumulated statistics (tensorstore zarr arrays + a JSON cursor).

Layout of a store directory:
  state.json              {"format", "fingerprint", "spec", "cursor", "generation", "extra", "checksums"}
  gen_000012/<name>/      one zarr array per accumulator name ('/' in a name makes sub-directories)

A commit writes every array into a fresh `gen_<n+1>/` directory, fsyncs it, then atomically
replaces `state.json` (temp file + fsync + os.replace + directory fsync) to point at it, and only
then deletes older generations. A SIGKILL at any moment therefore leaves either the old or the new
state, both complete; generation directories the state does not name are garbage and are removed
by the next commit. Arrays are read back with a per-array checksum recorded in the state.

A URL path (`gs://bucket/run/stats`, `file:///...`, `memory://...`) keeps the same layout as keys
of tensorstore's kvstore driver for that URL (io/kvstore.py): the arrays are written and complete
before state.json is replaced, and an object write is all-or-nothing, so the same commit order
gives the same crash safety (no fsync: the driver's write is durable when its future resolves).
"""
import hashlib
import json
import os
import re
import shutil

import numpy as np
import tensorstore as ts

from mmneuron_jax.errors import UserError
from mmneuron_jax.io import fingerprint as fingerprints
from mmneuron_jax.io import kvstore, paths

FORMAT = "mmneuron_jax.stats_store/1"
STATE = "state.json"
_GEN_RE = re.compile(r"^gen_(\d{6,})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_MAX_CHUNK_ELEMENTS = 1 << 22  # 4 Mi elements per zarr chunk


class StatsStoreError(ValueError):
  """A store on disk does not match what the caller asked for, or is damaged."""


class FingerprintMismatch(StatsStoreError, UserError):
  """The store holds statistics of other inputs (model, data, plan, code); nothing was changed."""


# ----------------------------------------------------------------------------- pure helpers

def normalize_spec(spec: dict) -> dict:
  """{name: (shape, dtype)} -> {name: (tuple shape, canonical dtype str)}, names validated."""
  out = {}
  for name, entry in spec.items():
    check_name(name)
    try:
      shape, dtype = entry
      shape = tuple(int(s) for s in shape)
      dtype = np.dtype(dtype).name
    except (TypeError, ValueError) as e:
      raise StatsStoreError(f"spec entry {name!r}: expected (shape, dtype), got {entry!r} ({e})") from None
    if any(s < 0 for s in shape):
      raise StatsStoreError(f"spec entry {name!r}: negative dimension in shape {shape}")
    if np.dtype(dtype).kind not in "biuf":
      raise StatsStoreError(f"spec entry {name!r}: dtype {dtype} is not numeric")
    out[name] = (shape, dtype)
  _check_no_nesting(out)
  return out


def check_name(name: str) -> None:
  """Names are '/'-separated components of [A-Za-z0-9_.-], no '.'/'..' components."""
  if not isinstance(name, str) or not name:
    raise StatsStoreError(f"array name must be a non-empty string, got {name!r}")
  for part in name.split("/"):
    if not _NAME_RE.match(part) or part in (".", "..") or _GEN_RE.match(part):
      raise StatsStoreError(f"array name {name!r}: bad component {part!r} "
                            "(use '/'-separated [A-Za-z0-9_.-] parts)")


def _check_no_nesting(spec: dict) -> None:
  names = sorted(spec)
  for a in names:
    for b in names:
      if b.startswith(a + "/"):
        raise StatsStoreError(f"array names {a!r} and {b!r} nest (one is a directory of the other)")


def spec_to_json(spec: dict) -> dict:
  return {k: [list(shape), dtype] for k, (shape, dtype) in sorted(spec.items())}


def spec_from_json(obj: dict) -> dict:
  return {k: (tuple(shape), dtype) for k, (shape, dtype) in obj.items()}


def spec_mismatch(stored: dict, wanted: dict) -> str | None:
  """A sentence naming the first differing field between two normalized specs, or None."""
  missing = sorted(set(wanted) - set(stored))
  if missing:
    return f"array {missing[0]!r} is requested but not in the store"
  extra = sorted(set(stored) - set(wanted))
  if extra:
    return f"array {extra[0]!r} is in the store but not requested"
  for name in sorted(wanted):
    (s_shape, s_dtype), (w_shape, w_dtype) = stored[name], wanted[name]
    if s_shape != w_shape:
      return f"array {name!r}: stored shape {s_shape} != requested shape {w_shape}"
    if s_dtype != w_dtype:
      return f"array {name!r}: stored dtype {s_dtype} != requested dtype {w_dtype}"
  return None


def chunk_shape(shape: tuple, max_elements: int = _MAX_CHUNK_ELEMENTS) -> tuple:
  """Chunks covering the trailing axes whole, split along leading axes to stay <= max_elements."""
  chunks = [max(1, s) for s in shape]
  for i in range(len(chunks)):
    rest = int(np.prod(chunks[i + 1:], dtype=np.int64)) if i + 1 < len(chunks) else 1
    if int(np.prod(chunks, dtype=np.int64)) <= max_elements:
      break
    chunks[i] = max(1, max_elements // max(1, rest))
  return tuple(chunks)


def checksum(a: np.ndarray) -> str:
  """sha256 of the C-order little-endian bytes (the value recorded per array in the state)."""
  a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
  return hashlib.sha256(a.tobytes()).hexdigest()


def gen_dirname(generation: int) -> str:
  return f"gen_{generation:06d}"


def zeros(spec: dict) -> dict:
  return {k: np.zeros(shape, dtype) for k, (shape, dtype) in sorted(spec.items())}


def check_totals(totals: dict, spec: dict, where: str) -> dict:
  """Validate names / shapes / dtypes (lossless casts only) -> {name: array of the spec dtype}."""
  missing, extra = sorted(set(spec) - set(totals)), sorted(set(totals) - set(spec))
  if missing or extra:
    raise StatsStoreError(f"{where}: arrays missing {missing}, unknown {extra}")
  out = {}
  for name, (shape, dtype) in sorted(spec.items()):
    a = np.asarray(totals[name])
    if a.shape != shape:
      raise StatsStoreError(f"{where}: array {name!r} has shape {a.shape}, expected {shape}")
    if not np.can_cast(a.dtype, dtype, "safe"):
      raise StatsStoreError(f"{where}: array {name!r} has dtype {a.dtype}, not losslessly castable to {dtype}")
    out[name] = a.astype(dtype, copy=False)
  return out


# ----------------------------------------------------------------------------- file helpers

def _fsync_path(path: str) -> None:
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def _fsync_tree(root: str) -> None:
  """fsync every file and directory under root (bottom-up), then root itself."""
  for dirpath, _, files in os.walk(root, topdown=False):
    for f in files:
      _fsync_path(os.path.join(dirpath, f))
    _fsync_path(dirpath)


def write_json_atomic(path: str, obj) -> None:
  """Write temp file, fsync, os.replace onto path, fsync the directory (a URL: one whole-object
  write through io/paths.py)."""
  if paths.is_url(path):
    paths.write_bytes(path, json.dumps(obj, indent=1, sort_keys=True).encode())
    return
  directory = os.path.dirname(os.path.abspath(path))
  tmp = f"{path}.tmp.{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=1, sort_keys=True)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
  _fsync_path(directory)


def _write_state(path: str, state: dict) -> None:
  if paths.is_url(path):
    kvstore.write(kvstore.open_dir(path), STATE, json.dumps(state, indent=1, sort_keys=True).encode())
  else:
    write_json_atomic(os.path.join(path, STATE), state)


def read_state(path: str) -> dict | None:
  """The parsed state file of store `path`, or None when there is none."""
  file = paths.join(path, STATE)
  try:
    if paths.is_url(path):
      data, _ = kvstore.read(kvstore.open_dir(path), STATE)
      if data is None:
        return None
      state = json.loads(data)
    else:
      if not os.path.exists(file):
        return None
      with open(file) as f:
        state = json.load(f)
  except (OSError, ValueError) as e:
    raise StatsStoreError(f"{file}: unreadable state file ({e})") from None
  for field in ("format", "fingerprint", "spec", "cursor", "generation", "extra", "checksums"):
    if field not in state:
      raise StatsStoreError(f"{file}: state has no field {field!r}")
  if state["format"] != FORMAT:
    raise StatsStoreError(f"{file}: field 'format' is {state['format']!r}, expected {FORMAT!r}")
  return state


def _array_spec(root: str, name: str) -> dict:
  if paths.is_url(root):
    return kvstore.zarr_spec(paths.join(root, name))
  return {"driver": "zarr", "kvstore": {"driver": "file", "path": os.path.join(root, *name.split("/"))}}


def _ts_open(spec: dict, **kwargs):
  url = not isinstance(spec["kvstore"], dict)
  return ts.open(spec, context=kvstore.CONTEXT, **kwargs) if url else ts.open(spec, **kwargs)


def write_arrays(root: str, arrays: dict) -> None:
  """Write {name: ndarray} as zarr arrays under a fresh directory root, fsynced."""
  if paths.is_url(root):
    kvstore.delete_all(kvstore.open_dir(root))
  else:
    if os.path.exists(root):
      shutil.rmtree(root)
    os.makedirs(root)
  futures = []
  for name, a in sorted(arrays.items()):
    spec = _array_spec(root, name)
    spec["metadata"] = {"chunks": list(chunk_shape(a.shape)) or [], "shape": list(a.shape),
                        "dtype": np.dtype(a.dtype).newbyteorder("<").str}
    store = _ts_open(spec, create=True).result()
    futures.append(store.write(a))
  for f in futures:
    f.result()
  if not paths.is_url(root):
    _fsync_tree(root)


def read_arrays(root: str, spec: dict, checksums: dict) -> dict:
  """Read every array of spec from root, checking shape, dtype and checksum."""
  out = {}
  for name, (shape, dtype) in sorted(spec.items()):
    where = paths.join(root, *name.split("/"))
    try:
      a = _ts_open(_array_spec(root, name), open=True).result().read().result()
    except Exception as e:  # tensorstore raises ValueError / RuntimeError variants
      raise StatsStoreError(f"{where}: cannot read array {name!r} ({e})") from None
    a = np.asarray(a)
    if a.shape != shape or a.dtype != np.dtype(dtype):
      raise StatsStoreError(f"{where}: array {name!r} is {a.dtype}{list(a.shape)}, state says {dtype}{list(shape)}")
    if checksum(a) != checksums.get(name):
      raise StatsStoreError(f"{where}: array {name!r} does not match its checksum in {STATE}")
    out[name] = a
  return out


def _entries(path: str) -> list:
  """Names directly under the store (a URL: first components of its keys)."""
  return kvstore.children(kvstore.open_dir(path)) if paths.is_url(path) else os.listdir(path)


def existing_generations(path: str) -> list[int]:
  return [int(m.group(1)) for m in map(_GEN_RE.match, _entries(path)) if m]


def remove_garbage(path: str, keep_generation: int | None) -> None:
  """Delete generation dirs other than keep_generation and leftover temp state files."""
  if paths.is_url(path):
    for entry in _entries(path):
      m = _GEN_RE.match(entry)
      if m and int(m.group(1)) != keep_generation:
        kvstore.delete_all(kvstore.open_dir(paths.join(path, entry)))
    return
  for entry in os.listdir(path):
    full = os.path.join(path, entry)
    m = _GEN_RE.match(entry)
    if m and int(m.group(1)) != keep_generation:
      shutil.rmtree(full, ignore_errors=True)
    elif entry.startswith(STATE + ".tmp."):
      try:
        os.remove(full)
      except FileNotFoundError:
        pass


def _check_fresh_dir(path: str) -> None:
  """A directory without state may only hold what a crashed creation/commit leaves behind."""
  for entry in _entries(path):
    if not (_GEN_RE.match(entry) or entry.startswith(STATE + ".tmp.")):
      raise StatsStoreError(f"{path}: directory is not empty and has no {STATE} "
                            f"(found {entry!r}); refusing to use it as a StatsStore")


# ----------------------------------------------------------------------------- the store

class StatsStore:
  """Named accumulator arrays + cursor, committed atomically. Single writer per directory."""

  def __init__(self, path: str, state: dict):
    self.path = path
    self._state = state

  @classmethod
  def open_or_create(cls, path: str, spec: dict, fingerprint: str | dict, overwrite: bool = False) -> "StatsStore":
    """Resume the store at path, or create an empty one (zeros, cursor 0).

    fingerprint: a str, or {field: digest} (io/fingerprint.py) so that a mismatch names the fields
    that differ. Raises FingerprintMismatch / StatsStoreError when an existing store has another
    fingerprint or spec, leaving it untouched; overwrite=True deletes it and starts afresh instead.
    """
    spec = normalize_spec(spec)
    fields = None
    if isinstance(fingerprint, dict):
      fields = {str(k): str(v) for k, v in fingerprint.items()}
      fingerprint = fingerprints.combine(fields)
    if not isinstance(fingerprint, str):
      raise StatsStoreError(f"{path}: fingerprint must be a str or dict, got {type(fingerprint).__name__}")
    if not paths.is_url(path):
      os.makedirs(path, exist_ok=True)
    state = read_state(path)
    if state is not None and overwrite and (state["fingerprint"] != fingerprint or
                                            spec_mismatch(spec_from_json(state["spec"]), spec)):
      if paths.is_url(path):
        kvstore.delete_all(kvstore.open_dir(path))
      else:
        shutil.rmtree(path)
        os.makedirs(path)
      state = None
    if state is None:
      _check_fresh_dir(path)
      remove_garbage(path, None)
      state = {"format": FORMAT, "fingerprint": fingerprint, "spec": spec_to_json(spec), "cursor": 0,
               "generation": None, "extra": {}, "checksums": {}}
      if fields is not None:
        state["fingerprint_fields"] = fields
      _write_state(path, state)
      return cls(path, state)
    file = paths.join(path, STATE)
    if state["fingerprint"] != fingerprint:
      stored = state.get("fingerprint_fields")
      if fields is not None and isinstance(stored, dict):
        what = "these inputs differ: " + ", ".join(fingerprints.differing(stored, fields))
      else:
        what = f"field 'fingerprint' is {state['fingerprint']!r} but this run's is {fingerprint!r}"
      raise FingerprintMismatch(f"{file}: the statistics here were computed from other inputs ({what}); "
                                "nothing was changed. Use another --workdir, or --config.overwrite=True "
                                "to start these statistics afresh")
    problem = spec_mismatch(spec_from_json(state["spec"]), spec)
    if problem:
      raise StatsStoreError(f"{file}: field 'spec': {problem}")
    return cls(path, state)  # stray generations are removed by the next commit, not by readers

  @property
  def cursor(self) -> int:
    return int(self._state["cursor"])

  @property
  def generation(self) -> int | None:
    return self._state["generation"]

  @property
  def fingerprint(self) -> str:
    return self._state["fingerprint"]

  @property
  def spec(self) -> dict:
    return spec_from_json(self._state["spec"])

  @property
  def extra(self) -> dict:
    return json.loads(json.dumps(self._state["extra"]))

  def totals(self) -> dict:
    """{name: np.ndarray} as of the last commit (zeros before the first one); a fresh copy."""
    if self.generation is None:
      return zeros(self.spec)
    root = paths.join(self.path, gen_dirname(self.generation))
    return read_arrays(root, self.spec, self._state["checksums"])

  def commit(self, totals: dict, cursor: int, extra: dict | None = None) -> None:
    """Write all arrays to a new generation, then atomically point the state at it.

    `extra` (JSON-serialisable) is merged into the stored metadata; None keeps it as is.
    The cursor may not go backwards.
    """
    arrays = check_totals(totals, self.spec, f"{self.path}: commit")
    cursor = int(cursor)
    if cursor < self.cursor:
      raise StatsStoreError(f"{self.path}: commit cursor {cursor} < stored cursor {self.cursor}")
    merged = dict(self._state["extra"])
    merged.update(extra or {})
    try:
      merged = json.loads(json.dumps(merged))
    except (TypeError, ValueError) as e:
      raise StatsStoreError(f"{self.path}: commit extra is not JSON-serialisable ({e})") from None
    generation = max([self.generation or 0] + existing_generations(self.path)) + 1  # never reuse a dir
    write_arrays(paths.join(self.path, gen_dirname(generation)), arrays)
    state = dict(self._state, cursor=cursor, generation=generation, extra=merged,
                 checksums={k: checksum(a) for k, a in arrays.items()})
    _write_state(self.path, state)
    self._state = state
    remove_garbage(self.path, generation)

  def __repr__(self):
    return f"StatsStore({self.path!r}, cursor={self.cursor}, generation={self.generation})"
