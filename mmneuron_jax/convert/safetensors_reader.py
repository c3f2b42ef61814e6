"""Lazy reader for a HF checkpoint directory: `model.safetensors` or a sharded index.

Nothing is read up front except the small JSON headers; `get` / `get_slice` read one
tensor (or one slice of it) on demand, so a device can load only its shard
(STYLE.md, "Never hold what you do not need"). bfloat16 / float8 tensors, which
`safetensors`' numpy backend cannot decode, are memory-mapped from the raw bytes
and viewed as `ml_dtypes` types.
"""
import glob
import json
import os
import struct

import ml_dtypes
import numpy as np
from safetensors import safe_open

from mmneuron_jax.errors import CheckpointError, MissingFile, read_json

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"

# safetensors dtype tag -> numpy dtype.
DTYPES = {
    "F64": np.dtype(np.float64), "F32": np.dtype(np.float32), "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn), "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "I64": np.dtype(np.int64), "I32": np.dtype(np.int32), "I16": np.dtype(np.int16), "I8": np.dtype(np.int8),
    "U64": np.dtype(np.uint64), "U32": np.dtype(np.uint32), "U16": np.dtype(np.uint16), "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
# Tags that safetensors' numpy backend decodes itself; the rest go through np.memmap.
_NUMPY_NATIVE = {"F64", "F32", "F16", "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL"}


def read_header(file: str) -> tuple[dict, int]:
  """A .safetensors file -> ({name: {dtype, shape, data_offsets}}, byte offset of the data).
  CheckpointError naming the file when it is not a complete safetensors file."""
  size = os.path.getsize(file)
  with open(file, "rb") as f:
    head = f.read(8)
    if len(head) != 8:
      raise CheckpointError(f"{file}: not a safetensors file (shorter than its 8-byte header length)")
    (n,) = struct.unpack("<Q", head)
    if n > size - 8:
      raise CheckpointError(f"{file}: not a safetensors file, or truncated (its header claims {n} bytes, the file "
                            f"has {size})")
    try:
      header = json.loads(f.read(n))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise CheckpointError(f"{file}: corrupt safetensors header ({e})") from None
  if not isinstance(header, dict):
    raise CheckpointError(f"{file}: corrupt safetensors header (not a JSON object)")
  ends = [e["data_offsets"][1] for k, e in header.items()
          if k != "__metadata__" and isinstance(e, dict) and len(e.get("data_offsets") or ()) == 2]
  if ends and 8 + n + max(ends) > size:
    raise CheckpointError(f"{file}: truncated ({size} bytes; its tensors need {8 + n + max(ends)}); "
                          "download or copy it again")
  header.pop("__metadata__", None)
  return header, 8 + n


def _find_files(path: str) -> tuple[list[str], dict[str, str] | None]:
  """Checkpoint dir -> (safetensors files, {tensor: file} from the index or None)."""
  index = os.path.join(path, INDEX_FILE)
  if os.path.isfile(index):
    with open(index) as f:
      weight_map = json.load(f).get("weight_map")
    if not isinstance(weight_map, dict):
      raise ValueError(f"{index}: no 'weight_map' dict in the sharded checkpoint index")
    weight_map = {k: os.path.join(path, v) for k, v in weight_map.items()}
    files = sorted(set(weight_map.values()))
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
      raise MissingFile(f"{index} refers to shard(s) that do not exist: "
                              + ", ".join(os.path.basename(f) for f in missing))
    return files, weight_map
  single = os.path.join(path, SINGLE_FILE)
  if os.path.isfile(single):
    return [single], None
  files = sorted(glob.glob(os.path.join(path, "*.safetensors")))
  if not files:
    raise MissingFile(f"{path}: no safetensors weights ({SINGLE_FILE}, {INDEX_FILE} or *.safetensors)")
  return files, None


class CheckpointReader:
  """Lazy access to the tensors of a HF checkpoint directory.

  `.keys()`, `.shape(name)`, `.dtype(name)` read only headers; `.get(name)` and
  `.get_slice(name, index)` read data. `.used` holds every name read so far.
  """

  def __init__(self, path: str):
    path = os.fspath(path)
    if not os.path.isdir(path):
      raise MissingFile(f"checkpoint directory {path!r} does not exist")
    config = os.path.join(path, "config.json")
    if not os.path.isfile(config):
      raise MissingFile(f"{config}: no config.json in the checkpoint directory {path!r}")
    self.config: dict = read_json(config, "checkpoint config.json")
    self.path = path
    self.files, weight_map = _find_files(path)
    self._entries: dict[str, tuple[str, dict, int]] = {}  # name -> (file, header entry, data start)
    headers = {file: read_header(file) for file in self.files}
    if weight_map is None:
      for file, (header, start) in headers.items():
        for name, entry in header.items():
          if name in self._entries:
            raise ValueError(f"{path}: tensor {name!r} is in both {os.path.basename(self._entries[name][0])} "
                             f"and {os.path.basename(file)}")
          self._entries[name] = (file, entry, start)
    else:
      for name, file in weight_map.items():
        header, start = headers[file]
        if name not in header:
          raise ValueError(f"{os.path.join(path, INDEX_FILE)} puts {name!r} in {os.path.basename(file)}, "
                           "but that shard does not hold it")
        self._entries[name] = (file, header[name], start)
    for name, (file, entry, _) in self._entries.items():
      if entry.get("dtype") not in DTYPES:
        raise ValueError(f"{file}: tensor {name!r} has unsupported dtype {entry.get('dtype')!r}")
    self._handles: dict[str, object] = {}
    self.used: set[str] = set()

  # -- metadata (headers only) ---------------------------------------------------------
  def keys(self) -> set[str]:
    return set(self._entries)

  def __contains__(self, name: str) -> bool:
    return name in self._entries

  def _entry(self, name: str):
    if name not in self._entries:
      raise KeyError(f"{self.path}: no tensor named {name!r} in the checkpoint")
    return self._entries[name]

  def shape(self, name: str) -> tuple[int, ...]:
    return tuple(self._entry(name)[1]["shape"])

  def dtype(self, name: str) -> np.dtype:
    return DTYPES[self._entry(name)[1]["dtype"]]

  # -- data ----------------------------------------------------------------------------
  def _handle(self, file: str):
    if file not in self._handles:
      self._handles[file] = safe_open(file, framework="numpy")
    return self._handles[file]

  def _memmap(self, name: str) -> np.ndarray:
    """Raw-byte view of a tensor numpy's safetensors backend cannot decode (e.g. bf16)."""
    file, entry, start = self._entry(name)
    shape, dtype = tuple(entry["shape"]), DTYPES[entry["dtype"]]
    begin, end = entry["data_offsets"]
    if end - begin != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
      raise ValueError(f"{file}: tensor {name!r} has {end - begin} bytes, expected {shape} x {dtype}")
    if end == begin:
      return np.zeros(shape, dtype)
    return np.memmap(file, dtype=dtype, mode="r", offset=start + begin, shape=shape)

  def get(self, name: str) -> np.ndarray:
    """The whole tensor, dtype as stored (bf16 as ml_dtypes.bfloat16), read into a fresh array.

    A plain read of its bytes (no memory map is kept), so the host holds only the tensors the
    caller still references: a shard's pages are not pinned until loading ends.
    """
    shape = self.shape(name)
    return self._read_rows(name, 0, shape[0]) if shape else self._read_rows(name)

  def _read_rows(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Rows `start:stop` of the tensor's leading axis (a scalar: all of it) by a plain read of
    their bytes, which are contiguous in the file."""
    file, entry, data = self._entry(name)
    self.used.add(name)
    shape, dtype = tuple(entry["shape"]), DTYPES[entry["dtype"]]
    begin, end = entry["data_offsets"]
    count = int(np.prod(shape, dtype=np.int64))
    if end - begin != count * dtype.itemsize:
      raise ValueError(f"{file}: tensor {name!r} has {end - begin} bytes, expected {shape} x {dtype}")
    row = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    out = np.empty((stop - start,) + shape[1:] if shape else (), dtype)
    if out.size:
      with open(file, "rb") as f:
        f.seek(data + begin + (start * row if shape else 0))
        if f.readinto(memoryview(out.reshape(-1).view(np.uint8))) != out.nbytes:
          raise ValueError(f"{file}: tensor {name!r} is cut short (file shorter than its header says)")
    return out

  def get_slice(self, name: str, index: tuple) -> np.ndarray:
    """`tensor[index]`, reading only that slice; `index` is a tuple of slices and/or ints."""
    file, entry, _ = self._entry(name)
    shape = tuple(entry["shape"])
    if not isinstance(index, tuple):
      index = (index,)
    if len(index) > len(shape):
      raise IndexError(f"{name!r}: index {index} has more axes than shape {shape}")
    self.used.add(name)
    if not shape:
      return self.get(name)
    # safetensors slices must be in bounds with step 1: clamp like numpy, ints as length-1 slices.
    bounded, squeeze = [], []
    for axis, (i, n) in enumerate(zip(index, shape)):
      if isinstance(i, slice):
        start, stop, step = i.indices(n)
        if step != 1:
          return np.array(self._memmap(name)[index])
        bounded.append(slice(start, max(start, stop)))
      else:
        i = int(i)
        if not -n <= i < n:
          raise IndexError(f"{name!r}: index {i} out of bounds for axis {axis} of shape {shape}")
        bounded.append(slice(i % n, i % n + 1))
        squeeze.append(axis)
    if any(s.start == s.stop for s in bounded):  # empty: nothing to read
      return np.zeros(np.zeros(shape, np.bool_)[index].shape, DTYPES[entry["dtype"]])
    if all((s.start, s.stop) == (0, n) for s, n in zip(bounded[1:], shape[1:])):  # leading rows: one read
      out = self._read_rows(name, bounded[0].start, bounded[0].stop)
      return out.squeeze(tuple(squeeze)) if squeeze else out
    if entry["dtype"] not in _NUMPY_NATIVE:
      return np.array(self._memmap(name)[index])
    out = np.asarray(self._handle(file).get_slice(name)[tuple(bounded)])
    return out.squeeze(tuple(squeeze)) if squeeze else out

  def close(self):
    self._handles.clear()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def __repr__(self):
    return f"CheckpointReader({self.path!r}, {len(self._entries)} tensors in {len(self.files)} file(s))"
