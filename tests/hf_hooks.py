"""PyTorch forward hooks on HF activation modules: record neurons and/or zero masked ones."""
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
