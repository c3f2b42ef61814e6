"""MINER `sweep` stage: the authors' grids from the stored stage-2 sums (no scores recomputed).

  ratio / weights / strategy  one-factor grids around the run's (select.ratio, select.weights,
                              select.strategy): each point's sets are selected from the stored sums
                              and, with sweep.deactivate, every modality's set is switched off while
                              generating (condition 'all', the authors' default `all_modalities`; the
                              random strategy's set is its one shared group), scored like the
                              deactivation stage; 'none' comes from that stage when it ran on the
                              same samples, else is generated here once.
  samples                     the sets selected from each sample-count snapshot
                              (config.scores.snapshots, `tasks/miner/snapshots.py`) and their Jaccard
                              with the final sets, per modality.

Writes sweep.json, and returns report lines (tables + plots under plots/sweep_*.png).
"""

import ml_collections
import numpy as np

from mmneuron_jax.analysis import miner, miner_sweep
from mmneuron_jax.io import paths
from mmneuron_jax.io.stats_store import read_state
from mmneuron_jax.tasks.miner import deactivation as miner_deactivation, plot_style, snapshots as miner_snapshots
from mmneuron_jax.tasks.miner.scores import parse_weights
from mmneuron_jax.tasks.common.plots import finish, new_figure
from mmneuron_jax.tasks.common.tables import md_table, signed, write_tables


def store_fingerprint(workdir: str, dataset: str) -> str:
  store = paths.join(workdir, "stats", dataset)
  state = read_state(store)
  if state is None:
    raise ValueError(f"{store}: no statistics store (the sweep needs the scores stage's sums)")
  return state["fingerprint"]


def eval_config(config, condition: str):
  """config.deactivate with one condition and the sweep's sample count."""
  cfg = ml_collections.ConfigDict(config.deactivate.to_dict())
  cfg.conditions = (condition,)
  cfg.n_per_dataset = int(config.sweep.n_per_dataset) or int(config.deactivate.n_per_dataset)
  return cfg


def baseline(workdir, config, results, evaluate_fn) -> tuple:
  """-> ('none' rows, {dataset: answers}): from the deactivation stage when it used the same samples,
  else generated (`evaluate_fn(condition, sel) -> (rows, predictions)`)."""
  rows = [r for r in results.get("deactivation") or [] if r["condition"] == "none"]
  same = int(config.sweep.n_per_dataset) in (0, int(config.deactivate.n_per_dataset))
  file = paths.join(workdir, "deactivation.json")
  if rows and same and paths.exists(file):
    predictions = paths.read_json(file)["predictions"]
  else:
    rows, predictions = evaluate_fn("none", None)
  return rows, {r["dataset"]: predictions[f"{r['dataset']}|none"] for r in rows}


def grid(config, agg, agg_grad, used, stored, final, final_names, run_eval) -> list:
  """-> one row per sweep point: {'axis', 'ratio', 'weights', 'strategy', 'key', 'K', 'sizes',
  'union', 'jaccard_vs_chosen', 'deactivation': {dataset: summary} (sweep.deactivate)}."""
  sel_cfg = config.select
  names = [m for m, u in zip(stored, used) if u]
  base = {"ratio": float(sel_cfg.ratio), "weights": sel_cfg.weights, "strategy": sel_cfg.strategy}
  points = miner_sweep.sweep_points(base, tuple(config.sweep.ratios), tuple(config.sweep.weights),
                                    tuple(config.sweep.strategies))
  done, rows = {}, []
  for p in points:
    key = miner_sweep.point_key(p)
    if key not in done:
      scores = miner_sweep.combined(agg, agg_grad, parse_weights(p["weights"]), float(sel_cfg.grad_weight))[used]
      sel = miner.select(scores, p["ratio"], p["strategy"], seed=sel_cfg.seed)
      deact = None
      if config.sweep.deactivate:
        deact = {r["dataset"]: {k: v for k, v in r.items() if k not in ("dataset", "condition")}
                 for r in run_eval("all", sel)}
      done[key] = {"K": miner.budget(p["ratio"], *sel.shape[1:]), "sizes": dict(zip(names, map(int, sel.sum((1, 2))))),
                   "union": int(sel.any(0).sum()),
                   "jaccard_vs_chosen": miner_sweep.set_jaccards(sel, names, final, final_names),
                   **({"deactivation": deact} if deact is not None else {})}
    rows.append({**p, "weights": p["weights"] if isinstance(p["weights"], str) else list(p["weights"]),
                 "key": key, **done[key]})
  return rows


def run(workdir, config, *, model, params, inputs, samples, originals, totals, stored, final, final_names,
        layer_min, results, sampling=None) -> list:
  """The sweep stage (see the module docstring) -> report lines. totals: the sums of the datasets the
  run aggregated (selection); samples: the evaluation sets; sampling: the run's decoding settings."""
  agg, agg_grad, used = miner_sweep.aggregate_sums(totals)
  names = [m for m, u in zip(stored, used) if u]

  def evaluate_fn(condition, sel):
    cfg = eval_config(config, condition)
    sel = np.zeros((len(names),) + agg.shape[2:], bool) if sel is None else sel
    return miner_deactivation.evaluate(model, params, inputs, samples, originals, sel, names, layer_min, cfg,
                                       config.data.source, config.seed, sampling=sampling)

  out = {"base": {"ratio": float(config.select.ratio), "weights": str(config.select.weights),
                  "strategy": config.select.strategy}, "short": config.sweep.short}
  none_answers = {}
  if config.sweep.deactivate:
    none_rows, none_answers = baseline(workdir, config, results, evaluate_fn)
    out["none"] = {r["dataset"]: {k: v for k, v in r.items() if k not in ("dataset", "condition")} for r in none_rows}

  def run_eval(condition, sel):
    """Rows of one condition, with the share of answers that differ from 'none' ('changed_vs_none')."""
    rows, predictions = evaluate_fn(condition, sel)
    for r in rows:
      got, base = predictions[f"{r['dataset']}|{condition}"], none_answers[r["dataset"]]
      r["changed_vs_none"] = float(np.mean([a != b for a, b in zip(got, base)]))
    return rows

  out["grid"] = grid(config, agg, agg_grad, used, stored, final, final_names, run_eval)
  counts = tuple(int(c) for c in (config.scores.get("snapshots") or ()))
  snaps = {d: miner_snapshots.load(workdir, d, counts, store_fingerprint(workdir, d)) for d in totals}
  out["samples"] = miner_sweep.convergence(
      snaps, totals, final, final_names, stored, counts, weights=parse_weights(config.select.weights),
      ratio=float(config.select.ratio), strategy=config.select.strategy, seed=config.select.seed,
      grad_weight=float(config.select.grad_weight), short=config.sweep.short)
  paths.write_json(paths.join(workdir, "sweep.json"), out, indent=1)
  write_tables(paths.join(workdir, "sweep.json"), tables(out))
  return section(workdir, out, final_names)


# ----------------------------------------------------------------------------- report

def tables(out: dict) -> dict:
  """sweep.json's tables as rows for CSV: grid (one row per sweep point; nested fields as dotted columns,
  e.g. `deactivation.<dataset>.primary`), none (per dataset, no neuron off), samples (snapshot Jaccards)."""
  return {"grid": out["grid"], "none": [{"dataset": d, **v} for d, v in (out.get("none") or {}).items()],
          "samples": out["samples"]}


def _mean_primary(deact: dict):
  vals = [v.get("primary") for v in deact.values()]
  vals = [v for v in vals if isinstance(v, (int, float))]
  return float(np.mean(vals)) if vals else None


def _fmt(x):
  return "" if x is None else (f"{x:.3f}" if isinstance(x, float) else x)


def section(workdir, out, final_names) -> list:
  plots = paths.join(workdir, "plots")
  paths.makedirs(plots)
  lines = ["## Sweeps (from the stored stage-2 sums)", "",
           f"One factor at a time around ratio {out['base']['ratio']}, weights `{out['base']['weights']}`, strategy "
           f"{out['base']['strategy']} (the authors' lists). `jaccard vs chosen` compares the union of the point's "
           "sets with the union of the run's chosen sets."
           + (" Deactivation: condition `all` (every modality's set off); `primary` is the dataset's primary "
              "metric, `mean` its mean over the datasets, `answers changed` the share of answers (mean over the "
              "datasets) that differ from the answers with no neuron off." if "none" in out else ""), ""]
  none = out.get("none")
  datasets = list(none) if none else []
  header = ["axis", "ratio", "weights", "strategy", "K", "union", "jaccard vs chosen"] + datasets + \
      (["mean", "mean vs none", "answers changed"] if none else [])
  base_mean = _mean_primary(none) if none else None
  table = []
  if none:
    table.append(["-", "-", "-", "none (no neuron off)", "", "", ""] + [_fmt(none[d].get("primary")) for d in datasets]
                 + [_fmt(base_mean), "", ""])
  for r in out["grid"]:
    w = r["weights"] if isinstance(r["weights"], str) else ",".join(f"{x:g}" for x in r["weights"])
    row = [r["axis"], r["ratio"], w, r["strategy"], r["K"], r["union"], _fmt(r["jaccard_vs_chosen"]["union"])]
    if none:
      d = r["deactivation"]
      mean = _mean_primary(d)
      changed = float(np.mean([v["changed_vs_none"] for v in d.values()]))
      row += [_fmt(d[x].get("primary")) for x in datasets] + [_fmt(mean), "" if mean is None or base_mean is None
                                                              else signed(mean - base_mean), _fmt(changed)]
    table.append(row)
  lines += [md_table(header, table), ""]
  if none:
    plot_grid(out, paths.join(plots, "sweep_grid.png"))
    lines += ["![sweep grid](plots/sweep_grid.png)", ""]
  rows = out["samples"]
  lines += ["### Samples behind the scores", "",
            "Sets selected from the sums over each dataset's first n samples (same weights, ratio, strategy), "
            "Jaccard with the final sets per modality. Datasets with fewer than n samples are "
            + ("left out (as the authors' aggregation skips a missing snapshot)." if out["short"] == "skip"
               else "taken whole.") + "", ""]
  if rows:
    mods = list(dict.fromkeys(m for r in rows for m in r["jaccard"]))
    header = ["samples", "datasets"] + [f"J {m}" for m in mods]
    lines += [md_table(header, [[r["samples"], ", ".join(r["datasets"])] + [_fmt(r["jaccard"].get(m)) for m in mods]
                                for r in rows]), ""]
    plot_samples(rows, mods, paths.join(plots, "sweep_samples.png"))
    lines += ["![samples](plots/sweep_samples.png)", ""]
  else:
    lines += ["No snapshot: config.scores.snapshots lists no count that a dataset reaches.", ""]
  return lines


def plot_grid(out, path=None):
  """Mean primary metric under deactivation per sweep point, one panel per axis (dashed: none)."""
  base = _mean_primary(out["none"])
  axes_names = [a for a in miner_sweep.AXES if any(r["axis"] == a for r in out["grid"])]
  fig = new_figure(4.2 * len(axes_names), 3.4)
  axes = fig.subplots(1, len(axes_names), squeeze=False)[0]
  for ax, name in zip(axes, axes_names):
    rows = [r for r in out["grid"] if r["axis"] == name]
    labels = [str(r[name] if isinstance(r[name], str) else (r[name] if name == "ratio" else ",".join(map(str, r[name]))))
              for r in rows]
    vals = [_mean_primary(r["deactivation"]) for r in rows]
    vals = [np.nan if v is None else v for v in vals]
    ax.bar(range(len(rows)), vals, color="tab:red")
    if base is not None:
      ax.axhline(base, ls="--", color="k", label="none")
      ax.legend(fontsize=7)
    ax.set_xticks(range(len(rows)), labels, rotation=45, fontsize=7, ha="right")
    ax.set(title=f"sweep: {name}", ylabel="mean primary (sets off)", ylim=(0, 1.05))
  return finish(fig, path, dpi=100)


def plot_samples(rows, mods, path=None):
  fig = new_figure(5.0, 3.4)
  ax = fig.subplots()
  x = [r["samples"] for r in rows]
  ys = []
  for k, m in enumerate(mods):  # marker + small multiplicative x offset per set: equal lines stay visible
    y = [np.nan if r["jaccard"].get(m) is None else r["jaccard"][m] for r in rows]
    ys.append(y)
    ax.plot(np.asarray(x, float) * 10 ** (0.1 * plot_style.offset(k, len(mods))), y, marker=plot_style.marker(k),
            label=m, ls="--" if m == "union" else "-")
  ax.set_xscale("log")
  ax.set_xticks(x, [str(v) for v in x])  # the sample counts themselves (integers)
  ax.minorticks_off()
  ax.set(xlabel="samples per dataset", ylabel="Jaccard with the final set", ylim=(0, 1.05),
         title=plot_style.flat_title("Convergence of the selected sets", ys))
  ax.legend(fontsize=7, handlelength=3)
  return finish(fig, path, dpi=100)
