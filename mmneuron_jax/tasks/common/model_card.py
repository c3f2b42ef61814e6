"""What model a run ran, for the first lines of every report: a trained demo (recipe and held-out
accuracy), a random-weight demo, a planted one, or a real checkpoint (path and config digest);
and the MMNeuron headline (each domain's neurons off vs the same number of random ones).
"""
import hashlib
import json
import os

import numpy as np
from mmneuron_jax.io import paths
from mmneuron_jax.tasks.common.tables import md_table, signed
from mmneuron_jax.tasks.train_demo import recipes


def _digest(file: str) -> str:
  with open(file, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()[:12]


def describe(config, workdir: str, planted: bool = False) -> list[str]:
  """Markdown lines naming the model of a run with `config` in `workdir`."""
  path = config.model.get("path", "")
  if path:
    cfg = os.path.join(path, "config.json")
    model_type = "?"
    if os.path.isfile(cfg):
      with open(cfg) as f:
        model_type = json.load(f).get("model_type", "?")
    digest = _digest(cfg) if os.path.isfile(cfg) else "missing config.json"
    return [f"**Model: real checkpoint** `{path}` ({model_type}; config.json sha256 `{digest}`).", ""]
  if planted:
    return ["**Model: planted demo** (tiny random weights with planted neurons: the ground truth is known, so this "
            "run checks that the analyses recover it; its answers are not meaningful).", ""]
  card = os.path.join(paths.local_scratch(workdir, "demo_checkpoint"), "train_demo.json")
  if config.model.get("demo_weights", "random") == "trained" and os.path.isfile(card):
    with open(card) as f:
      r = json.load(f)
    per = ", ".join(f"{d} {v:.2f}" for d, v in r.get("heldout_primary", {}).items())
    return [f"**Model: trained tiny demo** ({r['recipe']['family']}, recipe `{r['digest']}`, weights sha256 "
            f"`{r['weights_sha256']}`): trained on {r['n_train']} synthetic samples "
            f"(`data/synthetic/{'miner_skills' if r['recipe'].get('data') == 'miner_skills' else 'skills'}.py`, "
            "split 'train'); held-out mean primary metric "
            f"**{r.get('heldout_mean', float('nan')):.3f}** on {r['n_val']} 'val' samples ({per}). "
            "Reproduce: `mmneuron_jax/configs/train_demo_" + r["recipe"]["family"] + ".py`.", ""]
  family = config.model.get("family", "")
  trained = (f"`model.demo_weights=trained` runs a {family} demo model trained to answer"
             if family in recipes.RECIPES else f"there is no trained {family} demo "
             f"(trained demos: {', '.join(sorted(recipes.RECIPES))})")
  return ["**Model: random-weight tiny demo** (untrained: its answers are word salad, so metrics near 0 and "
          f"equal deltas show the pipeline runs, not a finding; {trained}).", ""]


def _primary(rows, domain, condition, control):
  return next((r["primary"] for r in rows if r["domain"] == domain and r["condition"] == condition
               and r["control"] == control), float("nan"))


def headline(rows: list, domains: list, condition: str = "all", top_rate: float | None = None) -> list[str]:
  """The deactivation headline: per domain, the primary metric with nothing off, with the domain's
  DAPE neurons off in `condition`'s modules, and with the random control; plus the mean drops."""
  if not rows or not any(r["condition"] == condition for r in rows):
    return []
  table, drops = [], []
  for d in domains:
    base, dape, rand = (_primary(rows, d, "none", "dape"), _primary(rows, d, condition, "dape"),
                        _primary(rows, d, condition, "random"))
    table.append([d, f"{base:.3f}", f"{dape:.3f} ({signed(dape - base)})", f"{rand:.3f} ({signed(rand - base)})"])
    drops.append((base - dape, base - rand))
  drops = np.asarray(drops, float)
  mean_base = float(np.nanmean([_primary(rows, d, "none", "dape") for d in domains]))
  dape_drop, rand_drop = np.nanmean(drops, axis=0)
  if max(abs(dape_drop), abs(rand_drop)) < 0.02:
    verdict = "barely changes with either its own or random neurons off (no effect at this set size)"
  elif dape_drop > rand_drop:
    verdict = "falls more with the domain's own neurons off than with random ones"
  else:
    verdict = "does NOT fall more with the domain's own neurons off than with random ones"
  rate = f" (DAPE top_rate {top_rate:g})" if top_rate is not None else ""
  lines = ["## Headline", "",
           f"With each domain's DAPE neurons{rate} switched off in `{condition}` modules, the domain's primary "
           f"metric {verdict}: mean drop **{signed(dape_drop)}** vs **{signed(rand_drop)}** for the random control of "
           f"the same per-layer sizes (no deactivation: mean {mean_base:.3f}).", ""]
  return lines + [md_table(["domain", "none", f"{condition}: own neurons off", f"{condition}: random off"], table), ""]
