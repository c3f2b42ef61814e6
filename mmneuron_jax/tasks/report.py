"""report.md with tables and PNG plots for an MMNeuron run."""
import os

import numpy as np


def _plt():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def plot_lens(lens_results: dict, path: str):
  plt = _plt()
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for domain, r in lens_results.items():
    layers = np.arange(1, len(r["entropy"]) + 1)
    axes[0].plot(layers, r["entropy"], marker="o", label=domain)
    axes[1].plot(layers, r["top1_prob"], marker="o", label=domain)
  axes[0].set(xlabel="LLM layer", ylabel="mean entropy (nats)", title="Logit lens at image tokens")
  axes[1].set(xlabel="LLM layer", ylabel="mean top-1 probability", title="Top-1 confidence")
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
  ax.set(ylabel=metric, title=f"Deactivating each domain's own neurons: {metric}")
  ax.legend(fontsize=7, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


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


def md_table(header: list, rows: list) -> str:
  lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
  for r in rows:
    lines.append("| " + " | ".join(f"{x:.4g}" if isinstance(x, float) else str(x) for x in r) + " |")
  return "\n".join(lines)


def write(workdir, *, config, model_id, domains, bad, stats_plan, totals, sets, summaries, rows, lens_results) -> str:
  from mmneuron_jax.analysis.neuron_sets import plot_layer_distribution
  plots = os.path.join(workdir, "plots")
  os.makedirs(plots, exist_ok=True)
  plot_layer_distribution(list(sets.values()), os.path.join(plots, "neurons_per_layer.png"))
  plot_lens(lens_results, os.path.join(plots, "logit_lens.png"))
  metrics = [k for k in ("primary", "vqa_accuracy", "anls", "anls_1.0", "letter_accuracy", "exact_match")
             if rows and k in rows[0]]
  for m in metrics:
    plot_deactivation(rows, m, os.path.join(plots, f"deactivation_{m}.png"))

  out = [f"# MMNeuron run: {model_id}", "",
         f"Config: `config.json`. Statistics positions: **{config.stats.positions}**; "
         f"DAPE top_rate={config.dape.top_rate}, filter_rate={config.dape.filter_rate}, "
         f"bar_ratio={config.dape.bar_ratio}.", ""]
  out += ["## Data", "", md_table(["domain", "stats samples", "vision tokens"],
                                  [[d, stats_plan[d]["samples"], stats_plan[d]["vision_tokens"]] for d in domains]),
          "", f"Bad records skipped: **{len(bad)}**" + ("" if not bad else ": " + ", ".join(
              f"`{i}` ({why})" for i, why in bad[:20]) + (" ..." if len(bad) > 20 else "")), ""]
  out += ["## Domain-specific neurons (DAPE)", ""]
  header = ["module", "unique"] + domains + ["overlap hist (1..D domains)"]
  table = []
  for m, s in summaries.items():
    table.append([m, s["unique"]] + [s["per_domain"][d] for d in domains] + [s["overlap_histogram"]])
  out += [md_table(header, table), "", "![neurons per layer](plots/neurons_per_layer.png)", "",
          "Neuron sets: `neurons/<module>.json` (reload with `NeuronSet.load`) and `neurons/<module>.pt` "
          "(list[domain][layer] index tensors, the PyTorch tools' format).", ""]
  out += ["## Deactivation", "", "Each domain is evaluated with its own neurons removed; `random` removes the same "
          "number of random neurons per layer.", ""]
  if "primary" in metrics:
    out += ["Primary metric per domain (ANLS for driving and documents, letter accuracy for medical, exact "
            "match for remote sensing, VQA accuracy for common scenes); change vs `none` in brackets:", "",
            md_table(["domain"] + [f"{c} ({k})" for c, k in condition_keys(rows)], primary_matrix(rows)), ""]
  header = ["domain", "condition", "control", "neurons off", "n"] + metrics
  out += [md_table(header, [[r["domain"], r["condition"], r["control"], r["neurons_off"], r["n"]] +
                            [r[m] for m in metrics] for r in rows]), ""]
  out += [f"![deactivation](plots/deactivation_{m}.png)" for m in metrics[:2]] + [""]
  out += ["## Logit lens at image tokens", "", "![logit lens](plots/logit_lens.png)", ""]
  n_layers = len(next(iter(lens_results.values()))["entropy"]) if lens_results else 0
  header = ["layer"] + [f"{d} H" for d in domains] + [f"{d} top-1" for d in domains]
  table = [[layer + 1] + [float(lens_results[d]["entropy"][layer]) for d in domains] +
           [f"{lens_results[d]['top1'][layer]} ({lens_results[d]['top1_prob'][layer]:.2f})" for d in domains]
           for layer in range(n_layers)]
  out += [md_table(header, table), ""]
  path = os.path.join(workdir, "report.md")
  with open(path, "w") as f:
    f.write("\n".join(out))
  return path
