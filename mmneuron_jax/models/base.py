"""`Model`: a Flax module, its params and config, and the pure `apply` of DESIGN.md."""
import dataclasses
import functools
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

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


def mask_arrays(masks, as_array=jnp.asarray):
  """{module: float[L, F] | (scale float[L, F], offset float[L, F])} -> the same structure of
  float32 arrays (`as_array`: jnp.asarray on one device, np.asarray for sharded steps)."""
  if masks is None:
    return None
  conv = lambda v: as_array(v, jnp.float32)
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


@dataclasses.dataclass
class Model:
  """A converted model. `apply(params, batch, masks, capture, probe, lens) -> Output`."""
  family: str
  module: Any
  params: Any
  config: dict
  probe_modules: dict
  prepare_fn: Callable[[dict], dict]
  groups_fn: Callable[..., dict]
  mesh: Any = None   # a jax.sharding.Mesh after `on_mesh`; None: plain single-device jits
  rules: Any = None  # the param sharding rules on `mesh` (sharding.DEFAULT_RULES by default)
  _jitted: dict = dataclasses.field(default_factory=dict, repr=False)

  def on_mesh(self, mesh, rules=None) -> "Model":
    """This model on `mesh` (`mmneuron_jax.sharding.make_mesh`): params placed per the logical
    `rules`; `apply` (masks, capture, probes such as MinerScores, lens), `generate` and
    `analysis.importance.grad_importance` then run as jits with explicit in/out shardings
    (batch over data+fsdp). mesh None -> self (the plain path)."""
    if mesh is None:
      return self
    from mmneuron_jax import sharding
    rules = sharding.DEFAULT_RULES if rules is None else rules
    return dataclasses.replace(self, params=sharding.place_params(self.params, mesh, rules), mesh=mesh,
                               rules=rules, _jitted={})

  def prepare(self, batch: dict) -> dict:
    """Host-side preprocessing (anyres indices etc.): the family's `prepare`, idempotent by the
    family's own rule."""
    return self.prepare_fn(batch)

  def token_groups(self, batch: dict, sample_groups, media_only: bool = False) -> dict:
    """{module: int32[...tokens]} group of every token each probe module sees (-1 = skip);
    `media_only` keeps only the LLM positions that hold the family's media (image / audio) features."""
    return self.groups_fn(self.prepare(batch), sample_groups, media_only)

  def device_batch(self, batch: dict) -> dict:
    prepared = self.prepare(batch)
    keys = DEVICE_KEYS + tuple(self.module.extra_inputs)
    return {k: jnp.asarray(prepared[k]) for k in keys if prepared.get(k) is not None}

  def check_masks(self, masks):
    for name, m in (masks or {}).items():
      if name not in self.probe_modules:
        raise KeyError(f"masks[{name!r}]: unknown module; probe modules are {sorted(self.probe_modules)}")
      parts = tuple(m) if isinstance(m, (tuple, list)) else (m,)
      if len(parts) not in (1, 2):
        raise ValueError(f"masks[{name!r}]: a float[L, F] multiplier or a (scale, offset) pair; got {len(parts)} "
                         "arrays")
      for part in parts:
        if tuple(np.shape(part)) != tuple(self.probe_modules[name]):
          raise ValueError(f"masks[{name!r}] has shape {np.shape(part)}, expected {self.probe_modules[name]}")

  def jitted_forward(self, capture=(), remat=False):
    key = (tuple(sorted(capture)), remat)
    if key not in self._jitted:
      for name in capture:
        if name not in self.probe_modules:
          raise KeyError(f"capture {name!r}: unknown module; probe modules are {sorted(self.probe_modules)}")
      module = self.module.clone(capture=key[0], remat=remat)
      self._jitted[key] = jax.jit(functools.partial(forward, module))
    return self._jitted[key]

  def apply(self, params, batch, masks=None, capture=(), probe=None, lens=None) -> Output:
    """batch: HF-named arrays; masks {module: float[L, F]}; capture module names; probe
    {module: probe pytree}; lens: `Lens`. See DESIGN.md."""
    if self.mesh is not None:
      return self._mesh_forward(capture)(params, batch, masks, probe, lens)
    self.check_masks(masks)
    masks = mask_arrays(masks)
    return self.jitted_forward(capture)(params, self.device_batch(batch), masks, probe, lens)

  def _mesh_forward(self, capture=()):
    from mmneuron_jax import sharding
    key = ("mesh", tuple(sorted(capture)))
    if key not in self._jitted:
      fn = sharding.sharded_forward(self, self.mesh, capture, rules=self.rules)
      self._jitted[key] = lambda *args: sharding.replicated_to_host(fn(*args))
    return self._jitted[key]

  def generate(self, params, batch, max_new_tokens=32, masks=None, **kwargs):
    """Greedy (or seeded sampling) generation with a KV cache; see models/generate.py."""
    from mmneuron_jax.models.generate import generate
    self.check_masks(masks)
    return generate(self, params, batch, max_new_tokens=max_new_tokens, masks=masks, **kwargs)
