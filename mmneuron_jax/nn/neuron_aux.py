"""What an MLP block hands back about its neurons, per layer (stacked by the layer scan)."""


def neuron_aux(neurons, probe=None, capture: bool = False, **extra) -> dict:
  """neurons float[..., F] -> aux {'neurons': neurons if `capture`, 'probe': probe(neurons) if a
  probe is given} plus `extra` entries (first)."""
  aux = dict(extra)
  if capture:
    aux["neurons"] = neurons
  if probe is not None:
    aux["probe"] = probe(neurons)
  return aux
