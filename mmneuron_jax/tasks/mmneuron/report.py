"""report.md with tables and PNG plots for an MMNeuron run."""
import os

import numpy as np

from mmneuron_jax.analysis.neuron_sets import plot_layer_distribution
from mmneuron_jax.tasks.common.tables import md_table
from mmneuron_jax.tasks.compare import side_by_side


def _plt():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def plot_lens(lens_results: dict, path: str):
  plt = _plt()
  from matplotlib.ticker import MaxNLocator
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for k, (domain, r) in enumerate(lens_results.items()):
    layers = np.arange(len(r["entropy"]))  # 0-based, as neuron sets and their plots number layers
    style = dict(marker="os^Dv"[k % 5], markersize=7 - k % 5, label=domain, alpha=0.85)  # coinciding lines stay visible
    axes[0].plot(layers, r["entropy"], **style)
    axes[1].plot(layers, r["top1_prob"], **style)
  axes[0].set(xlabel="LLM layer (0-based)", ylabel="mean entropy (nats)", title="Logit lens at image tokens")
  axes[1].set(xlabel="LLM layer (0-based)", ylabel="mean top-1 probability", title="Top-1 confidence")
  for ax in axes:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  axes[0].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_deactivation(rows: list, metric: str, path: str):
  plt = _plt()
  domains = sorted({r["domain"] for r in rows}, key=[r["domain"] for r in rows].index)
  keys = sorted({(r["condition"], r["control"]) for r in rows}, key=[(r["condition"], r["control"]) for r in rows].index)
  fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(domains)), 4))
  width = 0.8 / max(len(keys), 1)
  for j, key in enumerate(keys):
    vals = [next((r[metric] for r in rows if r["domain"] == d and (r["condition"], r["control"]) == key), np.nan)
            for d in domains]
    ax.bar(np.arange(len(domains)) + j * width, vals, width, label=f"{key[0]} ({key[1]})")
  ax.set_xticks(np.arange(len(domains)) + 0.4 - width / 2, domains, rotation=15)
  values = np.asarray([r[metric] for r in rows], float)
  same = values.size and np.all(values == values[0])
  ax.set(ylabel=metric, title=f"Deactivating each domain's own neurons: {metric}"
         + (f"\n(every value is {values[0]:.3f}: nothing to compare)" if same else ""))
  ax.legend(fontsize=7, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


METRICS = ("primary", "vqa_accuracy", "anls", "anls_1.0", "letter_accuracy", "exact_match")


def condition_keys(rows):
  return sorted({(r["condition"], r["control"]) for r in rows}, key=[(r["condition"], r["control"]) for r in rows].index)


def primary_matrix(rows):
  """[[domain, 'value (delta)', ...]] for every (condition, control)."""
  table = []
  for domain in sorted({r["domain"] for r in rows}, key=[r["domain"] for r in rows].index):
    mine = {(r["condition"], r["control"]): r["primary"] for r in rows if r["domain"] == domain}
    base = mine.get(("none", "dape"), float("nan"))
    table.append([domain] + [f"{mine[k]:.3f} ({mine[k] - base:+.3f})" for k in condition_keys(rows)])
  return table


def header_section(config, model_id, workdir=None, rows=(), domains=(), **_) -> list[str]:
  from mmneuron_jax.tasks.common import model_card
  card = model_card.describe(config, workdir) if workdir else []
  top = model_card.headline(list(rows), list(domains), top_rate=config.dape.top_rate)
  return [f"# MMNeuron run: {model_id}", ""] + card + top + [
          f"Config: `config.json`. Statistics positions: **{config.stats.positions}**; "
          f"DAPE top_rate={config.dape.top_rate}, filter_rate={config.dape.filter_rate}, "
          f"bar_ratio={config.dape.bar_ratio}.", ""]


def data_section(domains, bad, stats_plan, **_) -> list[str]:
  return ["## Data", "", md_table(["domain", "stats samples", "vision tokens"],
                                  [[d, stats_plan[d]["samples"], stats_plan[d]["vision_tokens"]] for d in domains]),
          "", f"Bad records skipped: **{len(bad)}**" + ("" if not bad else ": " + ", ".join(
              f"`{i}` ({why})" for i, why in bad[:20]) + (" ..." if len(bad) > 20 else "")), ""]


def neurons_section(workdir, domains, sets, summaries, **_) -> list[str]:
  plot_layer_distribution(list(sets.values()), os.path.join(workdir, "plots", "neurons_per_layer.png"))
  header = ["module", "unique"] + domains + ["overlap hist (1..D domains)"]
  table = [[m, s["unique"]] + [s["per_domain"][d] for d in domains] + [s["overlap_histogram"]]
           for m, s in summaries.items()]
  return ["## Domain-specific neurons (DAPE)", "", md_table(header, table), "",
          "![neurons per layer](plots/neurons_per_layer.png)", "",
          "Neuron sets: `neurons/<module>.json` (reload with `NeuronSet.load`) and `neurons/<module>.pt` "
          "(list[domain][layer] index tensors, the PyTorch tools' format).", ""]


def deactivation_section(workdir, rows, conditions=None, **_) -> list[str]:
  if not rows:
    return []
  metrics = [k for k in METRICS if k in rows[0]]
  for m in metrics:
    plot_deactivation(rows, m, os.path.join(workdir, "plots", f"deactivation_{m}.png"))
  out = ["## Deactivation", "", "Each domain is evaluated with its own neurons removed; `random` removes the same "
         "number of random neurons per layer.", ""]
  if conditions:
    out += ["Conditions (modules whose domain neurons are off): " + "; ".join(
        f"`{c}` = {', '.join(mods) or 'nothing'}" for c, mods in conditions.items()) + ".", ""]
  if "primary" in metrics:
    out += ["Primary metric per domain (ANLS for driving and documents, letter accuracy for medical, exact "
            "match for remote sensing, VQA accuracy for common scenes); change vs `none` in brackets:", "",
            md_table(["domain"] + [f"{c} ({k})" for c, k in condition_keys(rows)], primary_matrix(rows)), ""]
  header = ["domain", "condition", "control", "neurons off", "n"] + metrics
  out += [md_table(header, [[r["domain"], r["condition"], r["control"], r["neurons_off"], r["n"]] +
                            [r[m] for m in metrics] for r in rows]), ""]
  return out + [f"![deactivation](plots/deactivation_{m}.png)" for m in metrics[:2]] + [""]


def lens_section(workdir, domains, lens_results, **_) -> list[str]:
  if not lens_results:
    return []
  plot_lens(lens_results, os.path.join(workdir, "plots", "logit_lens.png"))
  n_layers = len(next(iter(lens_results.values()))["entropy"])
  header = ["layer (0-based)"] + [f"{d} H" for d in domains] + [f"{d} top-1" for d in domains]
  table = [[layer] + [float(lens_results[d]["entropy"][layer]) for d in domains] +
           [f"{lens_results[d]['top1'][layer]} ({lens_results[d]['top1_prob'][layer]:.2f})" for d in domains]
           for layer in range(n_layers)]
  return ["## Logit lens at image tokens", "", "![logit lens](plots/logit_lens.png)", "", md_table(header, table), ""]


def compare_section(workdir, config, **_) -> list[str]:
  """This run next to the runs in `config.compare_with` (tasks/compare/side_by_side.py)."""
  others = list(config.get("compare_with") or ())
  if not others:
    return []
  return side_by_side.section([side_by_side.load_run(d) for d in [workdir] + others], os.path.join(workdir, "plots"),
                              md_table)


# The report, in order; each section is f(**results) -> markdown lines ([] = left out).
SECTIONS = [header_section, data_section, neurons_section, deactivation_section, lens_section, compare_section]


def write(workdir, *, extra_sections=(), **results) -> str:
  """report.md from the run's results (keyword arguments of the SECTIONS: config, model_id, domains,
  bad, stats_plan, totals, sets, summaries, rows, lens_results, conditions); `extra_sections` are
  more section functions, appended before the side-by-side comparison."""
  os.makedirs(os.path.join(workdir, "plots"), exist_ok=True)
  sections = SECTIONS[:-1] + list(extra_sections) + SECTIONS[-1:]
  out = []
  for section in sections:
    out += section(workdir=workdir, **results)
  path = os.path.join(workdir, "report.md")
  with open(path, "w") as f:
    f.write("\n".join(out))
  return path
