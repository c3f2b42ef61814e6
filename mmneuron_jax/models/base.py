"""`Model`: a Flax module, its params and config, and the pure `apply` of docs/DESIGN.md."""
import dataclasses
import functools
from typing import Any, Callable

import jax.numpy as jnp
import numpy as np

from mmneuron_jax import sharding
from mmneuron_jax.models import generate as generation, input_checks
from mmneuron_jax.models.forward import DEVICE_KEYS, Output, forward, mask_arrays, output_shardings, split_aux

__all__ = ["DEVICE_KEYS", "Model", "Output", "forward", "mask_arrays", "split_aux"]

# Argument kinds of the forward step `forward(module, params, batch, masks, probe, lens)`.
FORWARD_KINDS = ("params", "batch", "replicated", "batch", "batch")


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
  source: str | None = None  # the checkpoint directory it was read from (its tokenizer / processor files)
  inputs_fn: Callable[..., Any] | None = None  # (**options) -> a `data.inputs.Processor` (set by api.build_model)
  mesh: Any = None   # a jax.sharding.Mesh after `on_mesh`; None: plain single-device jits
  rules: Any = None  # the param sharding rules on `mesh` (sharding.DEFAULT_RULES by default)
  _steps: dict = dataclasses.field(default_factory=dict, repr=False)

  def on_mesh(self, mesh, rules=None) -> "Model":
    """This model on `mesh` (`mmneuron_jax.sharding.make_mesh`): params placed per the logical
    `rules`; every step (`apply` with masks, capture, probes such as MinerScores, lens;
    `generate`; `analysis.importance.grad_importance`; `analysis.stats.make_step`) then runs as
    a jit with explicit in/out shardings (batch over data+fsdp). mesh None -> self."""
    if mesh is None:
      return self
    rules = sharding.DEFAULT_RULES if rules is None else rules
    return dataclasses.replace(self, params=sharding.place_params(self.params, mesh, rules), mesh=mesh,
                               rules=rules, _steps={})

  def cached(self, key, build: Callable[[], Any]):
    """The model's memo of compiled steps: `build()` once per hashable `key` (and per mesh:
    `on_mesh` starts a fresh memo)."""
    if key not in self._steps:
      self._steps[key] = build()
    return self._steps[key]

  def jit_step(self, key, fn, kinds, out_shardings=None):
    """`sharding.jit_step(fn, self.mesh, kinds, out_shardings, self.rules)`, built once per `key`:
    plain `jax.jit` off a mesh, explicit in/out shardings on one."""
    rules = sharding.DEFAULT_RULES if self.rules is None else self.rules
    return self.cached(key, lambda: sharding.jit_step(fn, self.mesh, kinds, out_shardings, rules))

  def prepare(self, batch: dict) -> dict:
    """Host-side preprocessing (anyres indices etc.): the family's `prepare`, idempotent by the
    family's own rule."""
    return self.prepare_fn(batch)

  def processor(self, **options):
    """The family's input builder (`data/inputs/<family>.py`, found by model_type) read from the
    checkpoint's own tokenizer / processor files in `source`, built once per `options` (the family's
    `Inputs.from_pretrained` options, e.g. Qwen2-VL's `min_pixels`). Refuses a model without them."""
    if self.inputs_fn is None:
      raise ValueError(f"{self.family}: this Model was built without an input builder; use mmneuron_jax.load_hf / "
                       "load / build_model")
    return self.cached(("processor", tuple(sorted(options.items()))), lambda: self.inputs_fn(self.source, **options))

  def inputs(self, texts, images=None, videos=None, audios=None, padding_side: str = "right", **options) -> dict:
    """Prompts (+ media) -> the HF-named numpy batch `apply` and `generate` take, for any family.

    texts: a prompt or a list of prompts with the family's media markers (`<image>`; Qwen2-VL also
    `<video>`; Qwen2-Audio `<audio>`); images: PIL images, videos: uint8[n, H, W, 3] frames, audios: 16 kHz
    float waveforms, one entry per prompt (a list where a prompt takes several). padding_side: 'right'
    (default) or 'left'; `generate` takes either. options: see `processor`."""
    return self.processor(**options)(texts, images=images, videos=videos, audios=audios, padding_side=padding_side)

  def decode(self, token_ids, **options) -> list[str]:
    """int[B, N] tokens (e.g. `generate`'s) -> strings, special tokens and padding dropped."""
    return self.processor(**options).decode(token_ids)

  def token_groups(self, batch: dict, sample_groups, media_only: bool = False) -> dict:
    """{module: int32[...tokens]} group of every token each probe module sees (-1 = skip);
    `media_only` keeps only the LLM positions that hold the family's media (image / audio) features."""
    return self.groups_fn(self.prepare(batch), sample_groups, media_only)

  def host_batch(self, batch: dict) -> dict:
    """The prepared arrays the forward takes, where they are (no device copy)."""
    prepared = self.prepare(batch)
    keys = DEVICE_KEYS + tuple(self.module.extra_inputs)
    return {k: prepared[k] for k in keys if prepared.get(k) is not None}

  def device_batch(self, batch: dict) -> dict:
    """`host_batch` copied to the default device."""
    return {k: jnp.asarray(v) for k, v in self.host_batch(batch).items()}

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

  def check_capture(self, capture):
    for name in input_checks.capture_names(capture):
      if name not in self.probe_modules:
        raise KeyError(f"capture {name!r}: unknown module; probe modules are {sorted(self.probe_modules)}")

  def forward_step(self, capture=(), remat=False, replicated_outputs=False):
    """-> jitted `step(params, prepared_batch, masks, probe, lens) -> Output` (see `apply`); on a
    mesh logits and captured neurons stay split on B unless `replicated_outputs`."""
    self.check_capture(capture)
    capture = tuple(sorted(input_checks.capture_names(capture)))
    module = self.module.clone(capture=capture, remat=remat)
    return self.jit_step(("forward", capture, remat, replicated_outputs), functools.partial(forward, module),
                         FORWARD_KINDS, output_shardings(replicated_outputs))

  def apply(self, params, batch, masks=None, capture=(), probe=None, lens=None) -> Output:
    """batch: HF-named arrays; masks {module: float[L, F]}; capture module names; probe
    {module: probe pytree}; lens: `Lens`. See docs/DESIGN.md."""
    self.check_masks(masks)
    capture = input_checks.capture_names(capture)
    input_checks.check_batch(self, batch)
    input_checks.check_lens(lens, batch)
    return self.forward_step(capture)(params, self.host_batch(batch), mask_arrays(masks), probe, lens)

  def generate(self, params, batch, max_new_tokens=32, masks=None, **kwargs):
    """Greedy (or seeded sampling) generation with a KV cache; see models/generate.py."""
    self.check_masks(masks)
    input_checks.check_batch(self, batch)
    batch = input_checks.left_padded(batch)  # right-padded prompts work too
    return generation.generate(self, params, batch, max_new_tokens=max_new_tokens, masks=masks, **kwargs)
