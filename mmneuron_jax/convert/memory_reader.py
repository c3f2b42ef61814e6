"""A checkpoint reader over tensors already in memory (a PyTorch `state_dict`, numpy arrays).

Same interface as `safetensors_reader.CheckpointReader` (keys / shape / dtype / get / get_slice),
so `mapping.apply_rules` converts a live HF model without writing it to disk first:

  reader = MemoryReader(hf_model.state_dict())
  params = apply_rules(reader, family.hf_rules(cfg), "bfloat16", ignore=family.IGNORE)

Tensors are copied to the host one at a time, when a rule asks for them (bf16 as ml_dtypes'
bfloat16, without a float32 detour).
"""
from __future__ import annotations

import ml_dtypes
import numpy as np


def to_numpy(x) -> np.ndarray:
  """torch.Tensor (any device, bf16 included) or array-like -> numpy array."""
  if hasattr(x, "detach"):  # torch
    import torch
    x = x.detach()
    if x.dtype == torch.bfloat16:
      return x.cpu().view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return x.cpu().numpy()
  return np.asarray(x)


class MemoryReader:
  """{name: tensor} -> the reader interface `mapping.apply_rules` uses."""

  def __init__(self, tensors: dict, where: str = "in-memory state_dict"):
    self._tensors = dict(tensors)
    self.where = where

  def keys(self) -> set[str]:
    return set(self._tensors)

  def __contains__(self, name: str) -> bool:
    return name in self._tensors

  def _tensor(self, name: str):
    if name not in self._tensors:
      raise KeyError(f"{self.where}: no tensor named {name!r}")
    return self._tensors[name]

  def shape(self, name: str) -> tuple[int, ...]:
    return tuple(self._tensor(name).shape)

  def dtype(self, name: str) -> np.dtype:
    x = self._tensor(name)
    if hasattr(x, "detach"):
      return to_numpy(x.reshape(-1)[:1]).dtype
    return np.asarray(x).dtype

  def get(self, name: str) -> np.ndarray:
    return to_numpy(self._tensor(name))

  def get_slice(self, name: str, index: tuple) -> np.ndarray:
    return to_numpy(self._tensor(name)[index])

  def close(self):
    self._tensors = {}

  def __repr__(self):
    return f"MemoryReader({self.where}, {len(self._tensors)} tensors)"
