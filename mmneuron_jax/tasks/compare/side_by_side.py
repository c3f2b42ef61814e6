"""MMNeuron runs side by side (e.g. LLaVA-NeXT and InstructBLIP): neuron budgets per module,
domain-specific neurons per layer, deactivation deltas and logit-lens curves.

Reads finished run directories (config.json, neurons/<module>.json, deactivation.json,
logit_lens.json), so it works on runs made elsewhere. Layers are put on a relative depth axis
(layer / (L - 1)) so 24-, 32- and 39-layer stacks share one plot.

COMMAND: python -m mmneuron_jax --config=mmneuron_compare --workdir=runs/compare \
  --config.compare_with="('runs/llava_next_demo','runs/instructblip_demo')"
"""
import os

import numpy as np

from mmneuron_jax.analysis.dape import budget
from mmneuron_jax.analysis.neuron_sets import NeuronSet
from mmneuron_jax.io import paths
from mmneuron_jax.tasks.common import plots
from mmneuron_jax.tasks.common.plots import finish, new_figure
from mmneuron_jax.tasks.common.tables import md_table, signed


def load_run(run_dir: str) -> dict:
  """-> {'dir', 'label', 'domains', 'sets' {module: NeuronSet}, 'rows' [...], 'lens' {domain: {...}}}.
  Missing deactivation / lens results are empty; a missing config or neuron sets is an error."""
  config_path = paths.join(run_dir, "config.json")
  set_dir = paths.join(run_dir, "neurons")
  if not paths.exists(config_path) or not paths.isdir(set_dir):
    raise FileNotFoundError(f"{run_dir}: not a finished MMNeuron run (needs config.json and neurons/)")
  config = paths.read_json(config_path)
  sets = {}
  for name in sorted(paths.listdir(set_dir)):
    if name.endswith(".json"):
      s = NeuronSet.load(paths.join(set_dir, name))
      sets[s.module] = s
  if not sets:
    raise FileNotFoundError(f"{set_dir}: no neuron sets (<module>.json)")
  deact = paths.join(run_dir, "deactivation.json")
  lens = paths.join(run_dir, "logit_lens.json")
  label = (config.get("model") or {}).get("id") or next(iter(sets.values())).model_id
  return {"dir": run_dir, "label": label, "domains": list(next(iter(sets.values())).group_names), "sets": sets,
          "rows": paths.read_json(deact)["rows"] if paths.exists(deact) else [],
          "lens": paths.read_json(lens) if paths.exists(lens) else {}}


def _unique_labels(runs):
  labels = [r["label"] for r in runs]
  return [f"{l} ({os.path.basename(os.path.normpath(r['dir']))})" if labels.count(l) > 1 else l
          for l, r in zip(labels, runs)]


def depth(layers: int) -> np.ndarray:
  """Relative depth of each layer in [0, 1] (a single layer sits at 0)."""
  return np.arange(layers) / max(layers - 1, 1)


def budget_rows(runs, labels) -> list:
  """[run, module, 'L x F', budget, unique selected, per-domain counts...] per module."""
  table = []
  for run, label in zip(runs, labels):
    for module, s in run["sets"].items():
      rate = float(s.meta.get("top_rate", 0.01))
      table.append([label, module, f"{s.layers} x {s.width}", budget(s.layers, s.width, rate),
                    int(s.mask.any(axis=0).sum())] + [int(s.mask[i].sum()) for i in range(len(s.group_names))])
  return table


def deltas(rows: list, metric: str = "primary") -> dict:
  """{(condition, control): {domain: metric - metric(none)}} for one run's deactivation rows."""
  base = {r["domain"]: r[metric] for r in rows if r["condition"] == "none" and r["control"] == "dape"}
  out = {}
  for r in rows:
    if r["domain"] in base and r["condition"] != "none" and metric in r:
      out.setdefault((r["condition"], r["control"]), {})[r["domain"]] = r[metric] - base[r["domain"]]
  return out


def mean_entropy(lens: dict) -> np.ndarray:
  """Mean over domains of the per-layer image-token entropy: float[L] ('entropy_image' where the run
  read the lens at every position, 'entropy' in runs that read image tokens only)."""
  return np.mean([np.asarray(v.get("entropy_image", v["entropy"]), np.float64) for v in lens.values()], axis=0)


def plot_neurons(runs, labels, path: str | None = None):
  """One panel per module (union over runs): unique selected neurons per relative depth, a line per run."""
  modules = list(dict.fromkeys(m for r in runs for m in r["sets"]))
  fig = new_figure(4.2 * len(modules), 3.6)
  axes = fig.subplots(1, len(modules), squeeze=False)[0]
  for ax, module in zip(axes, modules):
    have = [(j, run["sets"][module], label) for j, (run, label) in enumerate(zip(runs, labels))
            if module in run["sets"]]
    values = []
    for k, (j, s, label) in enumerate(have):
      per_layer = s.mask.any(axis=0).sum(axis=1)
      values.append(per_layer)
      if s.layers > 1:
        ax.plot(depth(s.layers), per_layer, color=f"C{j}", label=f"{label} ({s.layers}x{s.width})",
                **plots.series_style(k, len(have)))
      else:  # a one-layer module (LLaVA's projector): a bar per run
        ax.bar(k, per_layer[0], 0.5, color=f"C{j}", label=f"{label} (1x{s.width})")
    if all(s.layers == 1 for _, s, _ in have):
      ax.set_xticks(range(len(have)), [label for _, _, label in have], fontsize=7)
    ax.set(title=module + plots.flat_note(np.concatenate(values)),
           xlabel="relative depth" if any(s.layers > 1 for _, s, _ in have) else "run",
           ylabel="# domain-specific neurons")
    plots.integer_ticks(ax, x=False, y=True)
    ax.legend(fontsize=6, **plots.LEGEND)
  return finish(fig, path, dpi=110)


def plot_lens(runs, labels, path: str | None = None):
  """Mean image-token entropy per relative depth: a thick line per run, thin ones per domain."""
  fig = new_figure(6.5, 4)
  ax = fig.subplots()
  curves = []
  for j, (run, label) in enumerate(zip(runs, labels)):
    if not run["lens"]:
      continue
    for v in run["lens"].values():
      e = v.get("entropy_image", v["entropy"])
      ax.plot(depth(len(e)), e, color=f"C{j}", alpha=0.25, linewidth=0.8)
    curve = mean_entropy(run["lens"])
    curves.append(curve)
    ax.plot(depth(len(curve)), curve, color=f"C{j}", linewidth=2.2, label=label,
            **plots.series_style(j, len(runs)))
  ax.set(xlabel="relative LLM depth", ylabel="mean entropy (nats)",
         title="Logit lens at image tokens" + (plots.flat_note(np.concatenate(curves)) if curves else " (no results)"))
  ax.legend(fontsize=7, **plots.LEGEND)
  return finish(fig, path, dpi=110)


def section(runs: list, plots_dir: str, md_table) -> list[str]:
  """Markdown lines of the side-by-side section; plots land in `plots_dir` (linked as plots/...)."""
  labels = _unique_labels(runs)
  paths.makedirs(plots_dir)
  plot_neurons(runs, labels, paths.join(plots_dir, "compare_neurons_per_layer.png"))
  plot_lens(runs, labels, paths.join(plots_dir, "compare_logit_lens.png"))
  domains = list(dict.fromkeys(d for r in runs for d in r["domains"]))
  out = ["## Side by side: " + " vs ".join(f"`{l}`" for l in labels), "",
         "Runs: " + ", ".join(f"`{r['dir']}`" for r in runs) + ".", "",
         "### Neuron budgets per module", "",
         md_table(["run", "module", "layers x width", "budget", "unique selected"] + domains,
                  budget_rows(runs, labels)), "",
         "### Domain-specific neurons per layer", "",
         "![neurons per layer, side by side](plots/compare_neurons_per_layer.png)", ""]
  out += ["### Deactivation: change of the primary metric vs `none`", "",
          "Mean over domains (DAPE / random control of the same size):", ""]
  summary = []
  for run, label in zip(runs, labels):
    d = deltas(run["rows"])
    for cond in dict.fromkeys(c for c, _ in d):
      dape, rand = d.get((cond, "dape"), {}), d.get((cond, "random"), {})
      summary.append([label, cond, signed(np.mean(list(dape.values()))) if dape else "-",
                      signed(np.mean(list(rand.values()))) if rand else "-"] +
                     [signed(dape[x]) if x in dape else "-" for x in domains])
  out += [md_table(["run", "condition", "mean (dape)", "mean (random)"] + [f"{x} (dape)" for x in domains],
                   summary) if summary else "_No deactivation results._", ""]
  out += ["### Logit lens", "", "![logit lens, side by side](plots/compare_logit_lens.png)", ""]
  lens_rows = []
  for run, label in zip(runs, labels):
    if run["lens"]:
      curve = mean_entropy(run["lens"])
      lens_rows.append([label, len(curve), float(curve[0]), float(curve[len(curve) // 2]), float(curve[-1]),
                        int(np.argmin(curve))])
  out += [md_table(["run", "LLM layers", "H first", "H middle", "H last", "argmin layer (from 0)"], lens_rows)
          if lens_rows else "_No logit-lens results._", ""]
  return out


def run(config, workdir: str) -> str:
  """Task `mmneuron_compare`: a report.md comparing the runs in `config.compare_with`."""
  dirs = list(config.compare_with)
  if len(dirs) < 2:
    raise ValueError(f"config.compare_with needs at least two run directories; got {dirs}")
  paths.makedirs(workdir)
  lines = ["# MMNeuron runs compared", ""] + section([load_run(d) for d in dirs], paths.join(workdir, "plots"),
                                                     md_table)
  path = paths.join(workdir, "report.md")
  with paths.open(path, "w") as f:
    f.write("\n".join(lines))
  return path
