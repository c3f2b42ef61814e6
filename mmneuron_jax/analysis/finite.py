"""Non-finite checks: activations a statistics step saw, and loaded weights.

NaN activations compare false with 0, so they would count as "never active" and quietly empty the
neuron sets of every later layer. The probes count non-finite activations in the scan (one int32
per module and layer, `nonfinite/<module>` int[L] in a partial, `nn/probes.py`); the host checks it
per batch, and also that the float sums are finite (float32 overflow, or probes that keep only sums).
Layers are numbered from 0, like every table and plot of the reports.
"""
import numpy as np

from mmneuron_jax.errors import UserError


class NonFinite(UserError):
  """Non-finite activations or weights; the message names where they first appear."""


HINT = ("nothing of this batch was counted. Check the checkpoint's weights, or use model.dtype=float32 "
        "if bfloat16 overflows")


def check_partial(partial: dict, where: str, prefixes=("sum/", "sumsq/", "score_sum", "grad_sum")) -> None:
  """Raise NonFinite naming the module and first layer (0-based) where one batch saw NaN / Inf.

  partial: {'field/module': array[L, ...]} of one batch, with the probes' counters
  'nonfinite/module' int[L] (checked first) and float partials under `prefixes`; where: the batch,
  e.g. 'batch 3 (domain medical)'.
  """
  bad = [(name.partition("/")[2], np.asarray(partial[name]).reshape(-1)) for name in partial
         if name.startswith("nonfinite/") and np.asarray(partial[name]).any()]
  if bad:  # the towers feed the LLM: name it last, so the first module named is where NaN can start
    bad.sort(key=lambda mn: mn[0] == "llm")
    (module, n), others = bad[0], bad[1:]
    layer = int(np.flatnonzero(n)[0])
    also = "".join(f"; also module {m!r} from layer {int(np.flatnonzero(c)[0])}" for m, c in others)
    raise NonFinite(f"non-finite activations (NaN/Inf) in module {module!r}, layer {layer} ({int(n[layer])} values; "
                    f"{int(n.sum())} in all its layers){also}, first at {where}; {HINT}")
  for name in sorted(partial):
    if not name.startswith(prefixes):
      continue
    a = np.asarray(partial[name])
    if a.dtype.kind != "f" or np.isfinite(a).all():
      continue
    bad = ~np.isfinite(a.reshape(a.shape[0], -1)) if a.ndim else ~np.isfinite(a.reshape(1, 1))
    layer = int(np.argmax(bad.any(-1)))
    field, _, module = name.partition("/")
    if any(k.startswith("nonfinite/") for k in partial):  # counted activations were finite
      raise NonFinite(f"non-finite {field} (NaN/Inf) in module {module or field!r}, layer {layer} ({int(bad.sum())} "
                      f"values) at {where}, from finite activations: the float32 statistic overflowed; {HINT}")
    raise NonFinite(f"non-finite activations (NaN/Inf) in module {module or field!r}, layer {layer} "
                    f"({int(bad.sum())} values of {field}), first at {where}; {HINT}")


def check_params(params, where: str) -> None:
  """Raise NonFinite naming the first parameter (by path) holding NaN / Inf."""
  import jax
  import jax.numpy as jnp
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  flags = [jnp.isfinite(x).all() if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) else True
           for _, x in leaves]
  for (path, x), ok in zip(leaves, jax.device_get(flags)):
    if not bool(ok):
      name = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
      layer = ""
      if "layers" in name and x.ndim >= 2:  # stacked per layer: name the first layer
        per_layer = jax.device_get(jnp.isfinite(x).reshape(x.shape[0], -1).all(-1))
        layer = f" (stacked per layer: layer {int(np.argmin(per_layer))} first)"
      raise NonFinite(f"{where}: weight {name} {tuple(x.shape)} holds NaN/Inf values{layer}; the checkpoint is "
                      "damaged (model.check_weights=False skips this check)")
