"""The pure forward of every family: a prepared batch -> `Output` (logits, captured neurons,
probe results, lens readouts), and how its outputs sit on a mesh."""
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from mmneuron_jax import sharding
from mmneuron_jax.nn.attention import causal_mask

# Batch keys that reach every family's jitted forward; a module adds its own in `extra_inputs`.
DEVICE_KEYS = ("input_ids", "attention_mask", "position_ids")


@flax.struct.dataclass
class Output:
  """logits float32[B, T, V]; aux[name] float[L, B, T, F] captured neurons; probe[name] the
  stacked probe results [L, ...]; lens the stacked lens readouts [L, B, P, ...] (or None)."""
  logits: jax.Array
  aux: dict
  probe: dict
  lens: Any = None


def mask_arrays(masks):
  """{module: float[L, F] | (scale float[L, F], offset float[L, F])} -> the same structure of
  float32 arrays (jax arrays stay on their devices, the rest become numpy; `jit_step` places them)."""
  if masks is None:
    return None
  conv = lambda v: jnp.asarray(v, jnp.float32) if isinstance(v, jax.Array) else np.asarray(v, np.float32)
  return {k: tuple(conv(x) for x in v) if isinstance(v, (tuple, list)) else conv(v) for k, v in masks.items()}


def split_aux(aux: dict) -> tuple[dict, dict, Any]:
  """Per-module aux dicts -> (captured neurons, probe results, lens readouts)."""
  captured = {k: v["neurons"] for k, v in aux.items() if "neurons" in v}
  probes = {k: v["probe"] for k, v in aux.items() if "probe" in v}
  return captured, probes, aux.get("llm", {}).get("lens")


def forward(module, params, batch, masks=None, probe=None, lens=None):
  """Pure forward of a prepared batch -> Output. `module` must be static under jit."""
  ids = batch["input_ids"]
  am = batch.get("attention_mask")
  am = jnp.ones_like(ids) if am is None else am
  positions = batch.get("position_ids")
  if positions is None:
    positions = jnp.broadcast_to(jnp.arange(ids.shape[1]), ids.shape)
  extra = {k: batch[k] for k in module.extra_inputs if k in batch}
  logits, aux = module.apply({"params": params}, ids, positions,
                             causal_mask(am, module.cfg.text.sliding_window),
                             masks=masks, probe=probe, lens=lens, **extra)
  captured, probes, lens_out = split_aux(aux)
  return Output(logits=logits, aux=captured, probe=probes, lens=lens_out)


def output_shardings(replicate: bool = False):
  """-> `rule(out, mesh)`: logits split on B (axis 0), captured neurons on B (axis 1); the small
  probe and lens readouts replicated (every host can read them). replicate: everything replicated."""
  def rule(out, mesh):
    rep = lambda _: sharding.replicated(mesh)
    if replicate:
      return jax.tree_util.tree_map(rep, out)
    return out.replace(
        logits=sharding.batch_sharding_for(out.logits.shape, mesh, 0),
        aux=jax.tree_util.tree_map(lambda x: sharding.batch_sharding_for(x.shape, mesh, 1), out.aux),
        probe=jax.tree_util.tree_map(rep, out.probe),
        lens=jax.tree_util.tree_map(rep, out.lens))
  return rule
