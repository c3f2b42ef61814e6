"""Logical sharding rules: param path -> logical axes (`PARAM_AXES`) -> mesh axes (`LOGICAL_AXES`) ->
PartitionSpec / NamedSharding of every param."""
import re
from typing import Any, Sequence

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mmneuron_jax.sharding.mesh import useful_axes, axis_size

# Logical axes -> mesh axes (a name, a tuple of names, or None = replicated). Swap entries for
# another layout, e.g. {"embed": None} for pure tensor parallelism, then `logical_rules(...)`.
LOGICAL_AXES: dict[str, Any] = {
    "batch": ("data", "fsdp"),   # activations and inputs: the batch axis
    "embed": "fsdp",             # model width D of params (ZeRO-3 style; gathered per layer)
    "vocab": "tensor",           # V of the embedding and unembedding
    "heads": "tensor",           # attention heads (q/k/v out-dim, o in-dim)
    "mlp": "tensor",             # MLP width F (the neurons)
    "layers": None,              # the scanned layer axis L
}

# (regex searched in the '/'-joined param path, logical names of the param's *trailing* dims).
# First match wins; dims before the named ones (the scanned layer axis) stay replicated. Paths
# cover every family: decoders (llama / qwen2), CLIP, EVA and Qwen2-ViT towers, the Q-Former,
# the LLaVA projector, the Qwen2-VL patch merger, Whisper-style audio encoders.
PARAM_AXES: tuple[tuple[str, tuple], ...] = (
    (r"(^|/)(embed_tokens|word_embeddings)(/embedding)?$", ("vocab", "embed")),   # [V, D]
    (r"(^|/)lm_head(/kernel)?$", ("embed", "vocab")),                            # [D, V]
    (r"(^|/)(q|k|v|qkv|query|key|value)/kernel$", ("embed", "heads")),           # [L?, D, H*hd]
    (r"(^|/)(gate|up|fc1)/kernel$", ("embed", "mlp")),                           # [L?, D, F]
    (r"(^|/)(o|proj|out_proj)/kernel$", ("heads", "embed")),                     # [L?, H*hd, D]
    (r"(^|/)(down|fc2)/kernel$", ("mlp", "embed")),                              # [L?, F, D]
    (r"(^|/)(q|k|v|qkv|query|key|value)/bias$", ("heads",)),                     # [L?, H*hd]
    (r"(^|/)(gate|up|fc1)/bias$", ("mlp",)),                                     # [L?, F]
    (r"(^|/)(language_projection|projector)/kernel$", (None, "embed")),          # [D_tower, D]
    (r"(^|/)(patch_embed|position_embeddings?|embed_positions|conv[12]_kernel)$", ()),  # towers' input
                                                                                 # stems: replicated
    (r".*", ()),                                                                 # norms, embeddings: replicated
)


def logical_rules(param_axes=PARAM_AXES, logical=None) -> tuple[tuple[str, tuple], ...]:
  """(regex, logical names) rules + a logical -> mesh map (default `LOGICAL_AXES`) -> the
  (regex, mesh-axis spec) rules every function here takes as `rules`."""
  logical = LOGICAL_AXES if logical is None else {**LOGICAL_AXES, **logical}
  out = []
  for pattern, names in param_axes:
    unknown = [n for n in names if n is not None and n not in logical]
    if unknown:
      raise KeyError(f"logical_rules: rule {pattern!r} names unknown logical axes {unknown}; known: "
                     f"{sorted(logical)}")
    out.append((pattern, tuple(None if n is None else logical[n] for n in names)))
  return tuple(out)


# Column-parallel kernels [.., in, out]: in-dim on fsdp, out-dim (heads, MLP width, vocab) on
# tensor; row-parallel kernels (o, proj, down, fc2) [.., F, D]: the MLP width / heads on tensor.
DEFAULT_RULES: tuple[tuple[str, tuple], ...] = logical_rules()


def path_str(path) -> str:
  parts = []
  for k in path:
    for attr in ("key", "name", "idx"):
      if hasattr(k, attr):
        parts.append(str(getattr(k, attr)))
        break
    else:
      parts.append(str(k))
  return "/".join(parts)


def spec_for(path: str, shape: Sequence[int], mesh: Mesh, rules=DEFAULT_RULES) -> P:
  """PartitionSpec of one param: the first rule whose regex matches `path`, right-aligned on
  `shape`; a dim whose size is not divisible by its axes (or reuses an axis) is replicated."""
  shape = tuple(shape)
  for pattern, trailing in rules:
    if re.search(pattern, path):
      break
  else:
    trailing = ()
  trailing = tuple(trailing)[-len(shape):] if shape else ()
  spec = [None] * (len(shape) - len(trailing)) + list(trailing)
  used = set()
  for i, axes in enumerate(spec):
    axes = useful_axes(mesh, axes)
    names = () if axes is None else (axes,) if isinstance(axes, str) else axes
    if axes is None or shape[i] % axis_size(mesh, axes) or used & set(names):
      spec[i] = None
    else:
      spec[i] = axes
      used |= set(names)
  while spec and spec[-1] is None:
    spec.pop()
  return P(*spec)


def param_specs(abstract_params, mesh: Mesh, rules=DEFAULT_RULES):
  """Pytree of PartitionSpec with the params' structure (leaves need only `.shape`)."""
  return jax.tree_util.tree_map_with_path(lambda path, x: spec_for(path_str(path), x.shape, mesh, rules),
                                          abstract_params)


def param_shardings(abstract_params, mesh: Mesh, rules=DEFAULT_RULES):
  """Pytree of NamedSharding for `abstract_params` (e.g. `models.shapes.abstract_params(config)`,
  or real params); pass it to `load_hf(path, shardings=)` / `load(out_dir, shardings=)`."""
  return jax.tree_util.tree_map(lambda s: NamedSharding(mesh, s), param_specs(abstract_params, mesh, rules),
                                is_leaf=lambda x: isinstance(x, P))


def describe(params, mesh: Mesh, rules=DEFAULT_RULES) -> list[tuple[str, tuple, Any]]:
  """[(path, shape, PartitionSpec)] for every param, for logs and docs."""
  out = []
  for path, x in jax.tree_util.tree_flatten_with_path(params)[0]:
    out.append((path_str(path), tuple(x.shape), spec_for(path_str(path), x.shape, mesh, rules)))
  return out
