"""PyTorch forward hooks on HF activation modules: record neurons and/or zero masked ones; HF forward
and greedy generation under those hooks."""
import numpy as np
import torch


def neuron_hooks(modules: dict, masks=None, records=None):
  """modules {name: [per-layer activation module]}; masks {name: float[L, F]} multiplies each
  layer's output ((scale, offset) pairs: out * scale + offset); records {name: []} collects outputs (after masking). Returns the handles."""
  handles = []
  for name, mods in modules.items():
    for layer, mod in enumerate(mods):
      def hook(_, __, out, name=name, layer=layer):
        if masks is not None and name in masks:
          m = masks[name]
          if isinstance(m, tuple):  # affine (scale, offset): a * scale + offset
            out = out * torch.tensor(m[0][layer], dtype=out.dtype) + torch.tensor(m[1][layer], dtype=out.dtype)
          else:
            out = out * torch.tensor(m[layer], dtype=out.dtype)
        if records is not None:
          records[name].append(out.detach().numpy().copy())
        return out
      handles.append(mod.register_forward_hook(hook))
  return handles


def remove(handles):
  for h in handles:
    h.remove()


def torch_batch(batch):
  """numpy batch -> torch tensors (same names)."""
  return {k: torch.tensor(v) for k, v in batch.items()}


def random_masks(probe_modules, rate=0.05, seed=0):
  """{name: float32[L, F]} with about `rate` of the neurons set to 0, for `model.probe_modules`."""
  rng = np.random.default_rng(seed)
  return {name: (rng.random(shape) >= rate).astype(np.float32) for name, shape in probe_modules.items()}


def run_hf(hf, modules, batch, masks=None, **kwargs):
  """HF forward (no grad) with hooks on `modules` that record (and, given masks, mask) neuron
  activations. Returns (HF output, {name: float32[L, ...]} for every module that recorded)."""
  records = {name: [] for name in modules}
  handles = neuron_hooks(modules, masks, records)
  try:
    with torch.no_grad():
      out = hf(**torch_batch(batch), **kwargs)
  finally:
    remove(handles)
  return out, {k: np.stack(v) for k, v in records.items() if v}


def generate(hf, modules, batch, new, masks=None, pad_token_id=0):
  """HF greedy generation of exactly `new` tokens (no EOS stop), with `masks` applied through
  hooks on `modules` at prefill and every decode step. Returns HF's output ids as numpy."""
  handles = neuron_hooks(modules, masks) if masks is not None else []
  try:
    with torch.no_grad():
      out = hf.generate(**torch_batch(batch), max_new_tokens=new, min_new_tokens=new, do_sample=False,
                        eos_token_id=None, pad_token_id=pad_token_id)
  finally:
    remove(handles)
  return out.numpy()
