"""Neuron sets: which neurons of one probe module belong to which group (domain or modality).

A `NeuronSet` holds a bool mask[G, L, F] plus enough context to be read on its own. Files:
- `save` / `load`: a human-readable JSON file, one line of neuron indices per (group, layer):
    {"format": "mmneuron_jax.neuron_set", "version": 1, "model_id": ..., "module": ...,
     "layers": L, "width": F, "group_names": [...], "sizes": {group: n}, "meta": {...},
     "groups": {group: [[j, ...] (layer 0), [j, ...] (layer 1), ...]}}
- `export_torch` / `from_torch`: the PyTorch tools' format (MMNeuron's identify.py output,
  read by its mask_model.py): a `torch.save`d list[group][layer] of sorted LongTensor indices.
"""
import dataclasses
import io
import json
import os

import numpy as np

from mmneuron_jax.io import paths

FORMAT = "mmneuron_jax.neuron_set"
VERSION = 1


def _jsonable(x):
  if isinstance(x, np.ndarray):
    return x.tolist()
  if isinstance(x, (np.integer, np.floating, np.bool_)):
    return x.item()
  if isinstance(x, (tuple, set)):
    return list(x)
  raise TypeError(f"meta value of type {type(x).__name__} is not JSON-serialisable: {x!r}")


def _import_torch(what: str):
  try:
    import torch
  except ImportError as e:
    raise ImportError(f"{what} needs PyTorch, which is not installed (pip install torch)") from e
  return torch


@dataclasses.dataclass(eq=False)
class NeuronSet:
  """model_id, module, group_names [G], layers L, width F, mask bool[G, L, F], meta (JSON-able)."""
  model_id: str
  module: str
  group_names: list
  layers: int
  width: int
  mask: np.ndarray
  meta: dict = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    self.group_names = [str(g) for g in self.group_names]
    if len(set(self.group_names)) != len(self.group_names):
      raise ValueError(f"group names must be unique; got {self.group_names}")
    self.layers, self.width = int(self.layers), int(self.width)
    mask = np.asarray(self.mask)
    if mask.dtype != bool:
      raise ValueError(f"mask must be bool; got dtype {mask.dtype}")
    want = (len(self.group_names), self.layers, self.width)
    if mask.shape != want:
      raise ValueError(f"mask shape {mask.shape} != (groups, layers, width) = {want} for {self.module!r}")
    self.mask = mask
    self.meta = dict(self.meta or {})

  # -------------------------------------------------------------------------- views

  def indices(self, group) -> list:
    """-> [layer] lists of sorted neuron indices of one group (name or position)."""
    g = self._group_index(group)
    return [np.flatnonzero(self.mask[g, l]).tolist() for l in range(self.layers)]

  def sizes(self) -> dict:
    """{group: # neurons}."""
    return {n: int(self.mask[i].sum()) for i, n in enumerate(self.group_names)}

  def _group_index(self, group) -> int:
    if isinstance(group, (int, np.integer)) and not isinstance(group, bool):
      if not 0 <= group < len(self.group_names):
        raise ValueError(f"group index {group} out of range for {len(self.group_names)} groups")
      return int(group)
    if group not in self.group_names:
      raise ValueError(f"unknown group {group!r}; groups of {self.module!r}: {self.group_names}")
    return self.group_names.index(group)

  def to_masks(self, groups=None, value: float = 0.0) -> np.ndarray:
    """Multiplicative mask float32[L, F]: `value` (default 0) for neurons in ANY of `groups`
    (names or positions; None = all groups), 1 elsewhere."""
    if groups is None:
      rows = range(len(self.group_names))
    elif isinstance(groups, (str, int, np.integer)):
      rows = [self._group_index(groups)]
    else:
      rows = [self._group_index(g) for g in groups]
    off = np.zeros((self.layers, self.width), bool)
    for g in rows:
      off |= self.mask[g]
    return np.where(off, np.float32(value), np.float32(1.0)).astype(np.float32)

  # -------------------------------------------------------------------------- controls

  def random_like(self, seed: int) -> "NeuronSet":
    """A control with, per group and per layer, the same number of neurons drawn uniformly
    without replacement from range(width); deterministic in `seed` (group g, layer l draw from
    the stream seeded by (seed, g, l), so one group's draws do not depend on another's sizes)."""
    mask = np.zeros_like(self.mask)
    for g in range(len(self.group_names)):
      for l in range(self.layers):
        n = int(self.mask[g, l].sum())
        if n:
          rng = np.random.default_rng([int(seed), g, l])
          mask[g, l, rng.choice(self.width, size=n, replace=False)] = True
    meta = {**self.meta, "control": "random", "seed": int(seed)}
    return dataclasses.replace(self, mask=mask, meta=meta)

  # -------------------------------------------------------------------------- JSON file

  def to_json(self) -> str:
    header = {"format": FORMAT, "version": VERSION, "model_id": self.model_id, "module": self.module,
              "layers": self.layers, "width": self.width, "group_names": self.group_names,
              "sizes": self.sizes(), "meta": self.meta}
    head = json.dumps(header, indent=1, default=_jsonable, ensure_ascii=False)
    groups = []
    for i, name in enumerate(self.group_names):
      rows = ",\n".join("   " + json.dumps(idx) for idx in self.indices(i))
      groups.append(f"  {json.dumps(name, ensure_ascii=False)}: [\n{rows}\n  ]")
    return head[:-2] + ',\n "groups": {\n' + ",\n".join(groups) + "\n }\n}\n"

  def save(self, path: str) -> str:
    """Write the JSON file (see the module docstring); returns `path`."""
    text = self.to_json()
    if paths.is_url(path):  # gs://, file://, memory:// (io/paths.py)
      paths.write_bytes(path, text.encode("utf-8"))
      return path
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text)
    os.replace(tmp, path)
    return path

  @classmethod
  def from_json(cls, text: str, source: str = "<string>") -> "NeuronSet":
    try:
      d = json.loads(text)
    except json.JSONDecodeError as e:
      raise ValueError(f"{source}: not a JSON neuron-set file ({e})") from e
    if not isinstance(d, dict) or d.get("format") != FORMAT:
      raise ValueError(f"{source}: field 'format' must be {FORMAT!r}")
    if d.get("version") != VERSION:
      raise ValueError(f"{source}: unsupported version {d.get('version')!r} (this code reads {VERSION})")
    for key in ("model_id", "module", "layers", "width", "group_names", "groups"):
      if key not in d:
        raise ValueError(f"{source}: missing field {key!r}")
    names, layers, width = d["group_names"], int(d["layers"]), int(d["width"])
    if set(d["groups"]) != set(names):
      raise ValueError(f"{source}: 'groups' keys {sorted(d['groups'])} differ from group_names {names}")
    mask = np.zeros((len(names), layers, width), bool)
    for g, name in enumerate(names):
      mask[g] = _layer_lists_to_mask(d["groups"][name], layers, width, f"{source}: groups[{name!r}]")
    return cls(model_id=d["model_id"], module=d["module"], group_names=names, layers=layers, width=width,
               mask=mask, meta=d.get("meta") or {})

  @classmethod
  def load(cls, path: str) -> "NeuronSet":
    with paths.open(path, "rb") as f:
      return cls.from_json(f.read().decode("utf-8"), source=str(path))

  # -------------------------------------------------------------------------- PyTorch format

  def to_torch_lists(self) -> list:
    """-> list[group][layer] of torch.LongTensor sorted neuron indices (every group, empty ones too)."""
    torch = _import_torch("NeuronSet.to_torch_lists")
    return [[torch.tensor(idx, dtype=torch.long) for idx in self.indices(g)] for g in range(len(self.group_names))]

  def export_torch(self, path: str) -> str:
    """`torch.save` the list[group][layer] of LongTensor indices (MMNeuron's tools' format); returns `path`.
    Unlike the authors' identify.py, a group with no neurons is written (as empty tensors) rather than
    dropped, so positions always match `group_names`."""
    torch = _import_torch("NeuronSet.export_torch")
    if paths.is_url(path):
      buf = io.BytesIO()
      torch.save(self.to_torch_lists(), buf)
      paths.write_bytes(path, buf.getvalue())
      return path
    torch.save(self.to_torch_lists(), path)
    return path

  @classmethod
  def from_torch(cls, path: str, *, model_id: str, module: str, width: int, group_names=None, layers=None,
                 meta=None) -> "NeuronSet":
    """Read a `torch.save`d list[group][layer] of index tensors (or int lists). `group_names`
    defaults to group0..; `layers` is checked when given."""
    torch = _import_torch("NeuronSet.from_torch")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, (list, tuple)) or not all(isinstance(g, (list, tuple)) for g in data):
      raise ValueError(f"{path}: expected a list[group][layer] of index tensors; got {type(data).__name__}")
    names = list(group_names) if group_names is not None else [f"group{i}" for i in range(len(data))]
    if len(names) != len(data):
      raise ValueError(f"{path}: {len(data)} groups in the file but {len(names)} group_names given (the authors' "
                       "identify.py drops trailing groups with no neurons; pass the group_names that match)")
    n_layers = {len(g) for g in data}
    if len(n_layers) > 1:
      raise ValueError(f"{path}: groups have different numbers of layers {sorted(n_layers)}")
    file_layers = n_layers.pop() if n_layers else int(layers or 0)
    if layers is not None and int(layers) != file_layers:
      raise ValueError(f"{path}: {file_layers} layers in the file, expected {layers}")
    mask = np.zeros((len(names), file_layers, int(width)), bool)
    for g, per_layer in enumerate(data):
      lists = [np.asarray(x.cpu().numpy() if hasattr(x, "cpu") else x).reshape(-1) for x in per_layer]
      mask[g] = _layer_lists_to_mask(lists, file_layers, int(width), f"{path}: group {g}")
    return cls(model_id=model_id, module=module, group_names=names, layers=file_layers, width=int(width),
               mask=mask, meta=dict(meta or {}, source=str(path)))


def _layer_lists_to_mask(lists, layers: int, width: int, where: str) -> np.ndarray:
  """[layer] lists of neuron indices -> bool[L, F], with range / duplicate / integer checks."""
  if len(lists) != layers:
    raise ValueError(f"{where}: {len(lists)} layer lists, expected {layers}")
  mask = np.zeros((layers, width), bool)
  for l, idx in enumerate(lists):
    idx = np.asarray(idx)
    if idx.size == 0:
      continue
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
      raise ValueError(f"{where}, layer {l}: indices must be a flat list of integers")
    if idx.min() < 0 or idx.max() >= width:
      raise ValueError(f"{where}, layer {l}: index out of range [0, {width})")
    if len(np.unique(idx)) != len(idx):
      raise ValueError(f"{where}, layer {l}: duplicate indices")
    mask[l, idx] = True
  return mask
