"""MINER `semantics` stage (Finding IV, our reading; `analysis/miner_semantics.py`): the telomere
table of every strategy's sets, and (when the `last_token` stage ran) the probing deltas.
Writes semantics.json and returns report lines (plots/semantic_probing.png)."""
import json
import os

import numpy as np

from mmneuron_jax.analysis import miner_semantics
from mmneuron_jax.tasks.report import md_table


def run(workdir, config, *, sets_by_strategy, names, last_token=None) -> dict:
  edge = config.semantics.edge
  out = {"edge": edge, "telomeres": {s: miner_semantics.telomeres(ns.mask, names, edge)
                                     for s, ns in sets_by_strategy.items()}}
  if last_token is not None:
    out["probing"] = {d: {m: v.tolist() for m, v in miner_semantics.probing(
        r["mass"], last_token["modalities"], r["present"]).items()} for d, r in last_token["datasets"].items()}
  with open(os.path.join(workdir, "semantics.json"), "w") as f:
    json.dump(out, f, indent=1)
  return out


def section(workdir, res) -> list:
  def f(x):
    return "" if x is None else f"{x:.3f}"

  lines = ["## Finding IV: semantic telomeres and semantic probing (our reading)", "",
           "**Not a reproduction**: the MINER paper names these two phenomena without a definition this project "
           "could recover, and the authors' code has none (docs/QUIRKS.md). Readings used here:", "",
           "- *telomeres*: the share of each modality's set in the first and last layers (the ends of the layer "
           "stack) against a layer-uniform set (`ratio` > 1: concentrated at the ends);",
           "- *probing*: the change of the last token's attention mass on modality m's tokens when m's own "
           "selected neurons are off (Finding III data), per layer.", ""]
  tel = res["telomeres"]
  mods = list(dict.fromkeys(m for v in tel.values() for m in v))
  any_row = next(iter(next(iter(tel.values())).values()))
  header = ["strategy"] + [f"{m}: ends share (ratio)" for m in mods]
  table = [[s] + [f"{f(v[m]['share'])} ({f(v[m]['ratio'])})" if m in v else "" for m in mods] for s, v in tel.items()]
  lines += [f"Telomeres: {any_row['edge_layers']} layer(s) at each end; a layer-uniform set has share "
            f"{any_row['uniform_share']:.3f} there.", "", md_table(header, table), ""]
  probing = res.get("probing")
  if probing:
    plots = os.path.join(workdir, "plots")
    os.makedirs(plots, exist_ok=True)
    plot_probing(probing, os.path.join(plots, "semantic_probing.png"))
    header = ["dataset", "modality", "mean delta", "max delta (layer)", "min delta (layer)"]
    table = []
    for d, per in probing.items():
      for m, v in per.items():
        v = np.asarray(v)
        table.append([d, m, f"{v.mean():+.4f}", f"{v.max():+.4f} ({int(v.argmax())})", f"{v.min():+.4f} ({int(v.argmin())})"])
    lines += ["Probing: mass(m | m off) - mass(m | none) on the last token's attention.", "", md_table(header, table), "",
              "![semantic probing](plots/semantic_probing.png)", ""]
  else:
    lines += ["Probing needs the `last_token` stage (not run).", ""]
  return lines


def plot_probing(probing, path) -> str:
  from matplotlib.figure import Figure
  fig = Figure(figsize=(3.6 * len(probing), 3.0))
  axes = fig.subplots(1, len(probing), squeeze=False)[0]
  for ax, (d, per) in zip(axes, probing.items()):
    for m, v in per.items():
      ax.plot(np.arange(len(v)), v, marker="o", markersize=3, label=m)
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set(title=d, xlabel="layer", ylabel="mass(m | m off) - mass(m | none)")
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100, format="png")
  return path
