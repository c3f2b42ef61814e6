"""report.md with tables and PNG plots for a MINER run (matplotlib Figure API, no pyplot state)."""

import numpy as np

from mmneuron_jax.analysis import miner
from mmneuron_jax.io import paths
from mmneuron_jax.analysis.compare import pairwise_jaccard
from mmneuron_jax.tasks.common.plots import finish, new_figure, plot_layer_distribution
from mmneuron_jax.tasks.common.tables import md_table, signed
from mmneuron_jax.tasks.miner import plot_style
from mmneuron_jax.tasks.miner import protocol as miner_protocol
from mmneuron_jax.tasks.common import model_card


def plot_scores_by_layer(agg_scores, combined, names, path=None, agg_grad=None):
  """Mean over neurons of each aggregated score, per layer, one line per modality.
  agg_scores float[5, M, L, F]; combined float[M, L, F]; agg_grad float[M, L, F] or None."""
  panels = [(m, np.asarray(agg_scores)[k]) for k, m in enumerate(miner.METRICS)]
  if agg_grad is not None:
    panels.append(("grad (beyond the paper)", np.asarray(agg_grad)))
  panels.append(("combined", np.asarray(combined)))
  fig = new_figure(3.2 * len(panels), 3.2)
  axes = fig.subplots(1, len(panels), squeeze=False)[0]
  for ax, (title, x) in zip(axes, panels):
    layers = np.arange(x.shape[1])
    means = x.mean(axis=-1)
    for i, name in enumerate(names):  # marker + small x offset per modality: equal lines stay visible
      ax.plot(layers + plot_style.offset(i, len(names)), means[i], marker=plot_style.marker(i), markersize=4,
              label=name)
    ax.set(title=plot_style.flat_title(title, means), ylabel="mean score over neurons")
    plot_style.integer_layers(ax, x.shape[1])
  axes[0].legend(fontsize=7)
  return finish(fig, path, dpi=100)


def plot_overlap(selected, names, path=None):
  """Heat maps: overlap counts summed over layers, and Jaccard, between modality sets."""
  counts = miner.overlap_table(selected).sum(-1)
  jac = pairwise_jaccard(np.asarray(selected, bool))
  fig = new_figure(4.2 * 2, 3.6)
  axes = fig.subplots(1, 2)
  for ax, mat, title, fmt in ((axes[0], counts, "shared neurons", "{:d}"), (axes[1], jac, "Jaccard", "{:.2f}")):
    im = ax.imshow(mat, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=30, fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for i in range(len(names)):
      for j in range(len(names)):
        bright = mat[i, j] > 0.6 * max(mat.max(), 1e-12)
        ax.text(j, i, fmt.format(mat[i, j].item()), ha="center", va="center", color="k" if bright else "w", fontsize=8)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
  return finish(fig, path, dpi=100)


def plot_deactivation(rows, path=None, metrics=("primary", "changed_vs_none")):
  """Grouped bars, datasets x conditions, one panel per metric present in the rows (default: the
  dataset's primary metric, and the fraction of answers that changed vs no deactivation)."""
  metrics = [m for m in metrics if any(m in r for r in rows)]
  datasets = list(dict.fromkeys(r["dataset"] for r in rows))
  conditions = list(dict.fromkeys(r["condition"] for r in rows))
  fig = new_figure(max(6.0, 1.8 * len(datasets)) * len(metrics), 3.8)
  axes = fig.subplots(1, len(metrics), squeeze=False)[0]
  width = 0.8 / max(len(conditions), 1)
  for ax, metric in zip(axes, metrics):
    for j, c in enumerate(conditions):
      vals = [next((r.get(metric, np.nan) for r in rows if r["dataset"] == d and r["condition"] == c), np.nan)
              for d in datasets]
      ax.bar(np.arange(len(datasets)) + j * width, vals, width, label=c)
    ax.set_xticks(np.arange(len(datasets)) + 0.4 - width / 2, datasets, rotation=15)
    values = [r[metric] for r in rows if metric in r]
    ax.set(ylabel=metric, ylim=(0, 1.05), title=plot_style.flat_title(f"Deactivation: {metric}", values))
  # one legend for all panels (the same conditions and colours), beside the last one: never over a bar
  axes[-1].legend(fontsize=7, title="condition", title_fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  return finish(fig, path, dpi=100)


def headline_section(head: list) -> list:
  """The cross-benchmark average of the primary metric per deactivation condition, as a table."""
  datasets = [k for k in head[0] if k not in ("condition", "mean", "n_benchmarks", "vs_none")]
  fmt = lambda v: "" if v is None else f"{v:.3f}"
  header = ["condition", "**average**", "vs none"] + datasets
  table = [[h["condition"], f"**{h['mean']:.3f}**", "" if h["vs_none"] is None else signed(h['vs_none'])] +
           [fmt(h[d]) for d in datasets] for h in head]
  return ["## Headline: average over benchmarks", "",
          "Unweighted mean of each benchmark's `primary` metric per condition (the paper's "
          "0.56 -> 0.24 for Qwen2-VL, 0.69 -> 0.31 for Qwen2-Audio, none -> all at ratio 0.02).", "",
          md_table(header, table), ""]


def tables(results: dict) -> dict:
  """The report's tables from miner_results.json, as rows for CSV (`tables.write_tables`): headline
  (per condition), datasets, strategies (nested fields as dotted columns), overlap (every modality
  combination per layer, 0-based); the deactivation rows go to deactivation.csv."""
  combos = results["overlap"].get("combinations") or {}
  return {"headline": list(results.get("headline") or []),
          "datasets": [{"dataset": d, **v} for d, v in results["datasets"].items()],
          "strategies": [{"strategy": s, **v} for s, v in results["strategies"].items()],
          "overlap": [{"layer": l, **{c: v[l] for c, v in combos.items()}} for l in range(len(results["layer_min"]))]
          if combos else []}


def effects_section(effects: list) -> list:
  """Each modality's neurons off vs random neurons, on that modality's benchmarks."""
  if not effects:
    return []
  fmt = lambda v: "" if v is None else f"{v:.3f}"
  fmtd = lambda v: "" if v is None else signed(-v)
  table = [[e["modality"], ", ".join(e["benchmarks"]), fmt(e["none"]), f"{fmt(e['own'])} ({fmtd(e['own_drop'])})",
            f"{fmt(e['all'])} ({fmtd(e['all_drop'])})", f"{fmt(e['random'])} ({fmtd(e['random_drop'])})"]
           for e in effects]
  return ["## Headline: modality-specific neurons vs random", "",
          miner_protocol.effect_verdict(effects), "",
          "Mean primary metric over each modality's benchmarks (those whose samples carry it; text: the "
          "text-only ones), change vs none in brackets.", "",
          md_table(["modality", "benchmarks", "none", "own set off", "all sets off", "random off"], table), ""]


def write(workdir, *, config, results, agg_scores, combined, agg_grad, selected, sets_by_strategy) -> str:
  """Write plots and report.md from the run's results dict (see tasks/miner/); returns the path."""
  plots = paths.join(workdir, "plots")
  paths.makedirs(plots)
  names = results["modalities"]
  plot_scores_by_layer(agg_scores, combined, names, paths.join(plots, "scores_by_layer.png"), agg_grad)
  plot_layer_distribution([sets_by_strategy[results["strategy"]]], paths.join(plots, "neurons_per_layer.png"))
  plot_overlap(selected, names, paths.join(plots, "overlap.png"))
  rows = results.get("deactivation") or []
  if rows:
    plot_deactivation(rows, paths.join(plots, "deactivation.png"))

  L = len(results["layer_min"])
  out = [f"# MINER run: {results['model_id']} ({results['family']})", ""] + model_card.describe(config, workdir)
  if results.get("protocol"):
    out += miner_protocol.markdown(results["protocol"])
  out += effects_section(results.get("modality_effects") or [])
  if results.get("headline"):
    out += headline_section(results["headline"])
  out += [f"Config: `config.json`. Modality split **{results['split']}**; weights over {list(miner.METRICS)} = "
         f"{results['weights']}" + (f", grad weight {results['grad_weight']}" if results["grad_weight"] else "") +
         f"; strategy **{results['strategy']}**, ratio {results['ratio']}: K = int(ratio x {L} x "
         f"{results['width']}) = **{results['K']}**.", ""]
  out += ["## Data", ""]
  header = ["dataset", "samples", "skipped"] + [f"{m} present" for m in results["stored_modalities"]] + \
      [f"{m} tokens" for m in results["stored_modalities"]]
  table = [[d, v["samples"], len(v["bad"])] + [v["present"][m] for m in results["stored_modalities"]] +
           [v["tokens"][m] for m in results["stored_modalities"]] for d, v in results["datasets"].items()]
  out += [md_table(header, table), ""]
  bad = [(d, i, why) for d, v in results["datasets"].items() for i, why in v["bad"]]
  if bad:
    out += ["Skipped samples: " + ", ".join(f"`{d}/{i}` ({why})" for d, i, why in bad[:20]) +
            (" ..." if len(bad) > 20 else ""), ""]
  out += ["## Scores (stages 2-3)", "", "Per-sample scores min-max normalised per layer, averaged per dataset, then "
          "per modality over the datasets where it occurs" + (
              "; `grad` = -dNLL/dmask of the reference answer, normalised the same way (beyond the paper)"
              if agg_grad is not None else "") + ".", "", "![scores by layer](plots/scores_by_layer.png)", ""]
  out += ["## Selected neurons (stage 4)", ""]
  header = ["strategy"] + names + ["union", "per-modality target"]
  table = [[s, *[v["sizes"][m] for m in names], v["union"], v["target"]] for s, v in results["strategies"].items()]
  out += [md_table(header, table), "", f"Chosen: **{results['strategy']}**, saved as `neurons/llm.json` "
          "(`NeuronSet.load`) and `neurons/llm.pt` (list[modality][layer] index tensors); every strategy's sets "
          "in `neurons/strategies/`.", "", "![neurons per layer](plots/neurons_per_layer.png)", ""]
  combos = results["overlap"].get("combinations")
  if combos is None:  # runs written before the combination table: pairs only
    per_layer = np.asarray(results["overlap"]["per_layer"])
    combos = {f"{a}-{b}" if a != b else a: per_layer[i, j].tolist() for i, a in enumerate(names)
              for j, b in enumerate(names) if j >= i}
  header = ["layer"] + list(combos)
  table = [[l] + [int(v[l]) for v in combos.values()] for l in range(L)]
  table.append(["total"] + [int(sum(v)) for v in combos.values()])
  out += ["### Overlap of every modality combination per layer", "",
          "A single modality: its set size; `a-b-...`: neurons selected for every one of them (the authors' "
          "analysis table).", "", md_table(header, table), "", "![overlap](plots/overlap.png)", ""]
  if rows:
    out += ["## Deactivation", "", f"Value **{rows[0]['value']}**" + (
        " (each layer's activation-tensor minimum from stage 2: "
        + ", ".join(f"{v:.3f}" for v in results["layer_min"]) + ")" if rows[0]["value"] == "min" else "") +
        "; `random` switches off as many random neurons per layer as `all`.", ""]
    metrics = list(dict.fromkeys(k for r in rows for k, v in r.items() if isinstance(v, (int, float))
                                 and k not in ("dataset", "condition", "value", "neurons_off", "n")))
    base = {r["dataset"]: r.get("primary") for r in rows if r["condition"] == "none"}
    header = ["dataset", "condition", "neurons off", "n"] + metrics + ["primary vs none"]
    table = [[r["dataset"], r["condition"], r["neurons_off"], r["n"]] + [r.get(m, "") for m in metrics] +
             [signed(r['primary'] - base[r['dataset']]) if base.get(r["dataset"]) is not None
              and "primary" in r else ""] for r in rows]
    out += [md_table(header, table), "", "![deactivation](plots/deactivation.png)", ""]
  out += ["## Files", "", "`miner_results.json` (everything above; its tables also as CSV: "
          "`miner_results.{headline,datasets,strategies,overlap}.csv`), `scores.npz` (aggregated scores, combined "
          "scores, per-dataset means), `stats/<dataset>/` (resumable stage-2 sums), `deactivation.json` "
          "(answers; rows also in `deactivation.csv`). Reload with `mmneuron_jax.tasks.miner.load_results(workdir)`.",
          ""]
  path = paths.join(workdir, "report.md")
  with paths.open(path, "w") as f:
    f.write("\n".join(out))
  return path
