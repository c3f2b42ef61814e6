"""Tuned-lens translators on disk: orbax (`io.checkpoint`) under `<root>/<name>/`, reloaded by
name (the translators themselves: `analysis.tuned_lens`)."""
import os

import numpy as np

from mmneuron_jax.io import checkpoint

KIND = "tuned_lens"


def save(root: str, name: str, translators, meta: dict | None = None) -> str:
  """Write translators to `<root>/<name>/` (orbax + mmneuron.json); returns that directory."""
  if not name or os.sep in name:
    raise ValueError(f"tuned lens name {name!r} must be a plain directory name")
  t = {k: np.asarray(v) for k, v in translators.items()}
  layers, d = t["bias"].shape
  return checkpoint.save_params(os.path.join(root, name), t,
                                {"kind": KIND, "name": name, "layers": int(layers), "hidden": int(d),
                                 **(meta or {})}, overwrite=True)


def load(root: str, name: str | None = None) -> tuple[dict, dict]:
  """-> (translators, metadata) saved by `save` under `<root>/<name>/` (or the directory `root`
  itself when name is None)."""
  path = root if name is None else os.path.join(root, name)
  if not os.path.isdir(path):
    saved = sorted(n for n in os.listdir(root) if os.path.isdir(os.path.join(root, n))) if os.path.isdir(root) else []
    raise FileNotFoundError(f"tuned lens {name or path!r}: no directory {path} (saved under {root}: {saved})")
  params, meta = checkpoint.restore_params(path)
  if meta.get("kind") != KIND or set(params) != {"weight", "bias"}:
    raise ValueError(f"{path}: not a tuned-lens checkpoint (kind={meta.get('kind')!r}, "
                     f"params {sorted(params)}); save one with io.tuned_lens.save")
  return params, meta
