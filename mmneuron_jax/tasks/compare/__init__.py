"""Cross-architecture view of neuron sets from finished runs (MMNeuron domain sets and/or MINER
modality sets), any model families side by side: each run's family (its checkpoint's HF
`model_type`), distribution over relative depth and each group's mean depth, overlaps inside each
set, overlaps between sets of the same model family and module shape (e.g. MMNeuron domains vs MINER
modalities of one model; two checkpoints of one family are marked as such), and deactivation deltas
(each condition's primary metric minus `none`, averaged over domains / datasets).

Reads `<run>/neurons/<module>.json` (required), `<run>/config.json` and the checkpoint's config.json
(the family; `model.path`, else `<run>/demo_checkpoint`, else the config's `model.family` /
`model.demo`) and `<run>/deactivation.json` (optional) from each run of `config.compare.runs`; writes
compare.json, plots/ and report.md into the work directory. Nothing here is per family.
"""
import json
import os

import numpy as np

from mmneuron_jax.analysis import compare
from mmneuron_jax.analysis.neuron_sets import NeuronSet
from mmneuron_jax.io import paths
from mmneuron_jax.io import run_dir
from mmneuron_jax.tasks.common import plots
from mmneuron_jax.tasks.common.tables import md_table, signed, write_tables


def load_sets(runs, module: str, labels=()) -> list:
  """-> [(label, NeuronSet)] for each run directory; a clear error names a missing file."""
  labels = list(labels or [])
  if labels and len(labels) != len(runs):
    raise ValueError(f"config.compare.labels has {len(labels)} entries for {len(runs)} runs")
  out = []
  for i, run in enumerate(runs):
    path = paths.join(run, "neurons", f"{module}.json")
    if not paths.exists(path):
      raise FileNotFoundError(f"{path}: no neuron set for module {module!r} in run {run} "
                              "(a finished MMNeuron or MINER run has neurons/<module>.json)")
    s = NeuronSet.load(path)
    method = s.meta.get("method", "?")
    out.append((labels[i] if labels else f"{os.path.basename(os.path.normpath(run))} [{method}]", s))
  return out


def run_family(run: str) -> str | None:
  """The HF `model_type` of a run's model: its checkpoint's config.json (`model.path`, else the run's
  demo_checkpoint), else the config's `model.family` (MINER), else `model.demo` for a demo run; None
  when the run directory does not say."""
  model = (paths.read_json(paths.join(run, "config.json"), missing=None) or {}).get("model") or {}
  checkpoint = model.get("path") or paths.local_scratch(run, "demo_checkpoint")
  config = paths.read_json(paths.join(checkpoint, "config.json"), missing=None) or {}
  return config.get("model_type") or model.get("family") or (None if model.get("path") else model.get("demo"))


def run_deactivation(run: str) -> list:
  """The rows of `<run>/deactivation.json` ([] when the run has none)."""
  return (paths.read_json(paths.join(run, "deactivation.json"), missing=None) or {}).get("rows", [])


def overlap_key(s, family) -> tuple:
  """Sets with one key are overlapped neuron by neuron: same family (the model id when the family is
  unknown), module, layers and width."""
  return (family or s.model_id, s.module, s.layers, s.width)


def tables(result: dict) -> dict:
  """compare.json -> its tables as rows for CSV: runs (sizes as `sizes.<group>`), depth (each group's
  fraction per relative-depth bin `bin_<k>`), jaccard (group pairs within a set), cross (group pairs
  between two sets of one model family and module), deactivation (each run's delta per condition)."""
  runs = [{k: r[k] for k in ("label", "family", "model_id", "method", "layers", "width", "sizes")}
          for r in result["runs"]]
  depth = [{"run": r["label"], "group": g, "mean_depth": r["mean_depth"][i],
            **{f"bin_{k}": v for k, v in enumerate(r["depth_histogram"][i])}}
           for r in result["runs"] for i, g in enumerate(r["groups"])]
  within = [{"run": r["label"], "group_a": a, "group_b": b, "jaccard": r["jaccard"][i][j]}
            for r in result["runs"] for i, a in enumerate(r["groups"]) for j, b in enumerate(r["groups"])]
  groups = {r["label"]: r["groups"] for r in result["runs"]}
  cross = [{"a": c["a"], "b": c["b"], "group_a": ga, "group_b": gb, "jaccard": c["jaccard"][i][j]}
           for c in result["cross"] for i, ga in enumerate(groups[c["a"]]) for j, gb in enumerate(groups[c["b"]])]
  deactivation = [{"run": r["label"], "family": r["family"], **d} for r in result["runs"]
                  for d in r["deactivation_deltas"]]
  return {"runs": runs, "depth": depth, "jaccard": within, "cross": cross, "deactivation": deactivation}


def run(config, workdir: str) -> str:
  cfg = config.compare
  if not cfg.runs:
    raise ValueError("config.compare.runs is empty: list the run directories to compare")
  paths.makedirs(paths.join(workdir, "plots"))
  run_dir.accept(config, workdir)
  entries = load_sets(list(cfg.runs), cfg.module, cfg.labels)
  families = [run_family(r) for r in cfg.runs]
  deactivation = [compare.deactivation_deltas(run_deactivation(r)) for r in cfg.runs]
  bins = int(cfg.bins)
  result = {"module": cfg.module, "bins": bins, "runs": [], "cross": []}
  out = [f"# Neuron sets compared ({cfg.module})", "",
         "Relative depth: layer l of L covers [l/L, (l+1)/L); histograms give each group's fraction of neurons "
         "per depth bin. Jaccard = |A & B| / |A | B|.", ""]
  header = ["run", "family", "model", "method", "L x F", "groups (sizes)", "mean relative depth"]
  out += [md_table(header, [[label, fam or "?", s.model_id, s.meta.get("method", "?"), f"{s.layers} x {s.width}",
                             ", ".join(f"{g} {n}" for g, n in s.sizes().items()),
                             ", ".join(f"{g} {d:.2f}" for g, d in zip(s.group_names, compare.mean_depth(s)))]
                            for (label, s), fam in zip(entries, families)]), ""]
  plots.plot_depth(entries, paths.join(workdir, "plots", "depth.png"), bins)
  out += ["## Distribution by relative depth", "", "![depth](plots/depth.png)", ""]
  edges = [f"{k / bins:.1f}-{(k + 1) / bins:.1f}" for k in range(bins)]
  rows = []
  for i, (label, s) in enumerate(entries):
    hist = compare.depth_histogram(s, bins)
    within = compare.pairwise_jaccard(s)
    result["runs"].append({"label": label, "family": families[i], "model_id": s.model_id,
                           "method": s.meta.get("method"), "groups": s.group_names, "layers": s.layers,
                           "width": s.width, "sizes": s.sizes(), "depth_histogram": hist.tolist(),
                           "mean_depth": [None if np.isnan(d) else float(d) for d in compare.mean_depth(s)],
                           "deactivation_deltas": [{"condition": c, "control": k, "delta": v}
                                                   for (c, k), v in deactivation[i].items()],
                           "jaccard": within.tolist(),
                           "jaccard_per_layer": compare.pairwise_jaccard(s, per_layer=True).tolist()})
    rows += [[label, g] + [f"{v:.2f}" for v in hist[k]] for k, g in enumerate(s.group_names)]
    if len(s.group_names) > 1:
      name = f"jaccard_{i}.png"
      plots.plot_matrix(within, s.group_names, s.group_names, paths.join(workdir, "plots", name),
                          f"{label}: overlap between groups")
      result["runs"][-1]["plot"] = f"plots/{name}"
  out += [md_table(["run", "group"] + edges, rows), ""]
  out += ["## Overlap between groups of one set", ""]
  for r in result["runs"]:
    if "plot" in r:
      out += [f"![{r['label']}]({r['plot']})", ""]
  for i, (la, a) in enumerate(entries):
    for j, (lb, b) in enumerate(entries[i + 1:], i + 1):
      if overlap_key(a, families[i]) != overlap_key(b, families[j]):
        continue
      mat = compare.cross_jaccard(a.mask, b.mask)
      name = f"cross_{i}_{j}.png"
      plots.plot_matrix(mat, [f"{la}: {g}" for g in a.group_names], [f"{lb}: {g}" for g in b.group_names],
                          paths.join(workdir, "plots", name), "overlap between sets (Jaccard)")
      result["cross"].append({"a": la, "b": lb, "same_checkpoint": a.model_id == b.model_id,
                              "jaccard": mat.tolist(), "plot": f"plots/{name}",
                              "jaccard_per_layer": compare.cross_jaccard(a.mask, b.mask, per_layer=True).tolist()})
  if result["cross"]:
    out += ["## Overlap between sets of the same model family and module", ""]
    for c in result["cross"]:
      what = "" if c["same_checkpoint"] else " (two checkpoints of one family: the same neuron positions)"
      out += [f"{c['a']} vs {c['b']}{what}:", "", f"![cross]({c['plot']})", ""]
  out += ["## Deactivation: change of the primary metric vs `none`", "",
          "Mean over the run's domains / datasets of each condition's primary metric minus the same domain's "
          "`none` (MMNeuron controls: `dape` = its selected neurons, `random` = as many random ones).", ""]
  rows = [[label, fam or "?", cond, control or "-", signed(delta)]
          for (label, _), fam, d in zip(entries, families, deactivation) for (cond, control), delta in d.items()]
  out += [md_table(["run", "family", "condition", "control", "delta primary"], rows) if rows
          else "_No deactivation results._", ""]
  with paths.open(paths.join(workdir, "compare.json"), "w") as f:
    json.dump(result, f, indent=1)
  write_tables(paths.join(workdir, "compare.json"), tables(result))
  path = paths.join(workdir, "report.md")
  with paths.open(path, "w") as f:
    f.write("\n".join(out))
  return path

