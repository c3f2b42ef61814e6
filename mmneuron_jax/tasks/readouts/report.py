"""report.md and PNG plots for a "readouts" run: tuned vs logit lens, layer probes, learned masks."""

import numpy as np

from mmneuron_jax.io import paths
from mmneuron_jax.tasks.common.plots import LEGEND, finish, flat_note, new_figure
from mmneuron_jax.tasks.common.tables import md_table, signed
from mmneuron_jax.tasks.common import model_card


def _figure(rows=1, cols=1, size=(5.0, 3.6)):
  fig = new_figure(size[0] * cols, size[1] * rows)
  return fig, fig.subplots(rows, cols, squeeze=False)


def _save(fig, path, integer_x=False):
  if integer_x:
    from matplotlib.ticker import MaxNLocator
    for a in fig.axes:
      a.xaxis.set_major_locator(MaxNLocator(integer=True))
  return finish(fig, path, dpi=110)


# --------------------------------------------------------------------------- plots


def plot_tuned_lens(r: dict, path: str | None = None):
  """KL to the final distribution (image / text positions), answer rank and top-k, per layer."""
  fig, ax = _figure(2, 2)
  layers = np.arange(len(r["logit"]["image"]["kl"]))  # from 0, like every table
  k = r["top_k"]
  # the lenses differ by dash AND marker (logit: hollow squares, larger, drawn first; tuned: filled dots on
  # top), so where the curves coincide (the last layer) both stay visible
  styles = {"logit": dict(linestyle="--", marker="s", ms=6, mfc="none", zorder=2),
            "tuned": dict(linestyle="-", marker="o", ms=3, zorder=3)}
  for lens, style in styles.items():
    for kind, colour in (("image", "C0"), ("text", "C1")):
      ax[0, 0].plot(layers, r[lens][kind]["kl"], color=colour, label=f"{lens} lens, {kind}", **style)
      ax[0, 1].plot(layers, r[lens][kind]["entropy"], color=colour, label=f"{lens}, {kind}", **style)
    ax[1, 0].plot(layers, r[lens]["answer"]["mean_rank"] + 1, color="C2", label=f"{lens} lens", **style)
    ax[1, 1].plot(layers, r[lens]["answer"][f"top{k}"], color="C3", label=f"{lens} top-{k}", **style)
    ax[1, 1].plot(layers, r[lens]["answer"]["top1"], color="C4", label=f"{lens} top-1", **style)
  both = lambda get: flat_note([get(r[lens]) for lens in styles])
  ax[0, 0].set(xlabel="LLM layer (from 0)", ylabel="KL(final || layer) (nats)",
               title="Held-out KL to the final distribution" + both(lambda x: [x["image"]["kl"], x["text"]["kl"]]))
  ax[0, 1].set(xlabel="LLM layer (from 0)", ylabel="entropy (nats)",
               title="Entropy" + both(lambda x: [x["image"]["entropy"], x["text"]["entropy"]]))
  ax[1, 0].set(xlabel="LLM layer (from 0)", ylabel="answer rank (1 = top)", yscale="log",
               title="Rank of the answer token" + both(lambda x: x["answer"]["mean_rank"] + 1))
  ax[1, 1].set(xlabel="LLM layer (from 0)", ylabel="fraction", ylim=(-0.05, 1.05),
               title="Answer token in top-k" + both(lambda x: [x["answer"][f"top{k}"], x["answer"]["top1"]]))
  for a in ax.ravel():
    a.legend(fontsize=7, **LEGEND)
  return _save(fig, path, integer_x=True)


def plot_probe_accuracy(results: dict, path: str | None = None):
  fig, ax = _figure(1, 1, (7.0, 4.0))
  a = ax[0, 0]
  for i, (spec, r) in enumerate(results.items()):
    layers = np.arange(len(r["heldout_acc"]))  # from 0
    a.plot(layers, r["heldout_acc"], "-", marker="o", ms=5, color=f"C{i}", zorder=3, label=f"{spec} (held-out)")
    a.plot(layers, r["control_acc"], ":", marker="x", ms=5, color=f"C{i}", zorder=4,
           label=f"{spec} (permuted-label control)")
    a.axhline(r["majority"], color=f"C{i}", lw=0.7, alpha=0.5)
  values = [[r["heldout_acc"], r["control_acc"]] for r in results.values()]
  a.set(xlabel="layer (from 0)", ylabel="accuracy", ylim=(-0.02, 1.02),
        title="Linear probes per layer (thin lines: majority class)" + flat_note(values))
  a.legend(fontsize=7, **LEGEND)
  return _save(fig, path, integer_x=True)


def plot_projection(r: dict, spec: str, path: str | None = None):
  """One PCA panel per layer, points coloured by label."""
  proj, labels, classes = r["projection"], r["projection_labels"], r["classes"]
  n = proj.shape[0]
  cols = min(n, 4)
  fig, ax = _figure(-(-n // cols), cols, (3.2, 3.0))
  for layer in range(ax.size):
    a = ax.ravel()[layer]
    if layer >= n:
      a.axis("off")
      continue
    for c, name in enumerate(classes):
      sel = labels == c
      a.scatter(proj[layer, sel, 0], proj[layer, sel, 1], s=6, alpha=0.7, label=name)
    a.set_title(f"layer {layer}: acc {r['heldout_acc'][layer]:.2f} "
                f"({100 * r['explained'][layer].sum():.0f}% var)", fontsize=8)
    a.tick_params(labelsize=6)
  ax.ravel()[0].legend(fontsize=6, markerscale=2)
  fig.suptitle(f"PCA per layer: {spec}", fontsize=9)
  return _save(fig, path)


def plot_mask_effects(effects: dict, domains, path: str | None = None):
  """Answer NLL change vs no removal: rows = whose neurons are removed, columns = evaluated domain."""
  names = [k for k in effects if k != "none"]
  fig, ax = _figure(1, len(names), (4.2, 3.8))
  base = np.asarray(effects["none"]["nll"])
  lim = max(max(np.abs(np.asarray(effects[n]["nll"]) - base[None]).max() for n in names), 1e-6)  # one scale
  for a, name in zip(ax[0], names):
    delta = np.asarray(effects[name]["nll"]) - base[None]
    im = a.imshow(delta, cmap="RdBu_r", vmin=-lim, vmax=lim)
    a.set_xticks(range(len(domains)), domains, rotation=45, ha="right", fontsize=7)
    a.set_yticks(range(len(domains)), domains, fontsize=7)
    a.set(xlabel="evaluated domain", ylabel="neurons removed", title=f"{name}: answer NLL change{flat_note(delta)}")
    fig.colorbar(im, ax=a, shrink=0.8)
  return _save(fig, path)


# --------------------------------------------------------------------------- CSV tables

def _per_layer(tree: dict, layer: int) -> dict:
  """The `layer`-th entry of every per-layer list in a nested dict (other leaves left out)."""
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out[k] = _per_layer(v, layer)
    elif isinstance(v, list) and layer < len(v):
      out[k] = v[layer]
  return out


def tuned_lens_table(r: dict) -> list:
  """A tuned-lens result (JSON form) -> one row per LLM layer (from 0, as in the report), columns `logit.<kind>.<metric>`
  and `tuned.<kind>.<metric>` (kind image / text / answer)."""
  return [{"layer": l, "logit": _per_layer(r["logit"], l), "tuned": _per_layer(r["tuned"], l)}
          for l in range(len(r["logit"]["image"]["kl"]))]


def tables(results: dict, domains: list) -> dict:
  """readouts.json (JSON form) and the run's domains -> its tables as rows for CSV: tuned_lens (per layer), probes (per spec and
  layer), probes_summary, masks_comparison, masks_effects (answer NLL / top-1 per removed domain and
  measured domain; condition `none`: nothing removed), masks_accuracy."""
  out = {}
  if results.get("tuned_lens"):
    out["tuned_lens"] = tuned_lens_table(results["tuned_lens"])
  probes = results.get("probes") or {}
  out["probes"] = [{"spec": s, "layer": l, **{k: r[k][l] for k in ("heldout_acc", "train_acc", "control_acc")}}
                   for s, r in probes.items() for l in range(len(r["heldout_acc"]))]
  out["probes_summary"] = [{"spec": s, **{k: r[k] for k in ("n_samples", "points", "best_layer",
                                                             "first_layer_at_threshold", "majority") if k in r}}
                           for s, r in probes.items()]
  masks = results.get("masks") or {}
  out["masks_comparison"] = list(masks.get("comparison") or [])
  out["masks_accuracy"] = list(masks.get("accuracy") or [])
  eff = masks.get("effects") or {}
  if eff:
    rows = [{"condition": "none", "removed": "", "domain": d, "neurons_off": 0, "nll": eff["none"]["nll"][e],
             "top1": eff["none"]["top1"][e]} for e, d in enumerate(domains)]
    rows += [{"condition": n, "removed": g_name, "domain": d, "neurons_off": e_["sizes"][g_name],
              "nll": e_["nll"][g][e], "top1": e_["top1"][g][e]}
             for n, e_ in eff.items() if n != "none" for g, g_name in enumerate(domains) for e, d in enumerate(domains)]
    out["masks_effects"] = rows
  return out


# --------------------------------------------------------------------------- sections


def _fmt(x, digits=3):
  return "-" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{digits}f}"


def tuned_lens_section(r: dict) -> list:
  k = r["top_k"]
  source = f"loaded from `{r['dir']}`" if r["loaded"] else (
      f"trained ({len(r['losses'])} Adam steps on {r['n_train_points']} positions), saved with orbax to "
      f"`{r['dir']}` and reloaded by name (`io.tuned_lens.load(root, {r['name']!r})`)")
  out = ["## Tuned lens vs logit lens", "",
         f"One affine translator per LLM layer (identity = the logit lens), {source}. Held out: "
         f"{r['n_heldout_samples']} of {r['n_samples']} samples ({r['n_heldout_points']} positions). KL is "
         "KL(final || layer) in nats; `answer` = the last prompt position, whose next token is the answer's first "
         f"token. The scanned `Lens(translator=...)` agrees with the offline readout to {r['scan_vs_offline']:.1e} nats.",
         "", "![tuned lens](plots/tuned_lens.png)", ""]
  header = ["layer", "KL img logit", "KL img tuned", "KL text logit", "KL text tuned", "H img logit", "H img tuned",
            "answer rank logit", "answer rank tuned", f"top-{k} logit", f"top-{k} tuned"]
  rows = []
  lo, tu = r["logit"], r["tuned"]
  for layer in range(len(lo["image"]["kl"])):
    rows.append([layer, _fmt(lo["image"]["kl"][layer]), _fmt(tu["image"]["kl"][layer]), _fmt(lo["text"]["kl"][layer]),
                 _fmt(tu["text"]["kl"][layer]), _fmt(lo["image"]["entropy"][layer]), _fmt(tu["image"]["entropy"][layer]),
                 _fmt(lo["answer"]["mean_rank"][layer] + 1, 1), _fmt(tu["answer"]["mean_rank"][layer] + 1, 1),
                 _fmt(lo["answer"][f"top{k}"][layer], 2), _fmt(tu["answer"][f"top{k}"][layer], 2)])
  out += [md_table(header, rows), ""]
  final_loss = f"; final training loss (mean KL over all layers) {r['losses'][-1]:.3f}" if len(r["losses"]) else ""
  out += [f"Mean held-out KL over every layer but the last (layers are numbered from 0): logit {np.nanmean(lo['image']['kl'][:-1]):.3f} -> tuned "
          f"{np.nanmean(tu['image']['kl'][:-1]):.3f} at image positions, {np.nanmean(lo['text']['kl'][:-1]):.3f} -> "
          f"{np.nanmean(tu['text']['kl'][:-1]):.3f} at text positions{final_loss}.", ""]
  return out


def mmneuron_tuned_lens_section(workdir, tuned_lens=None, **_) -> list:
  """The MMNeuron report's optional section (`report.write(extra_sections=...)`): tuned vs logit lens."""
  if not tuned_lens:
    return []
  plot_tuned_lens(tuned_lens, paths.join(workdir, "plots", "tuned_lens.png"))
  return tuned_lens_section(tuned_lens)


def probes_section(results: dict, threshold: float) -> list:
  out = ["## Layer probes", "",
         "Multinomial logistic regression per layer (optax, full batch, L2), trained on features of the training "
         "samples and scored on held-out samples; the control permutes the labels across samples (chance). "
         "Spec = `features:pool:label` (features `hidden` = LLM residual stream, else a module's neurons; pool "
         "`token` or per-sample `mean`). Layers are numbered from 0.", "", "![probe accuracy](plots/probe_accuracy.png)", ""]
  never = lambda layer: "never" if layer is None else layer  # layer 0 is a layer
  summary = [[f"`{s}`", r["n_samples"], r["points"], r["n_heldout"], r["best_layer"], _fmt(max(r["heldout_acc"])),
              never(r["first_layer_at_threshold"]), _fmt(r["majority"]), _fmt(float(np.mean(r["control_acc"])))]
             for s, r in results.items()]
  out += [md_table(["spec", "samples", "points", "held-out points", "best layer", "best acc",
                    f"first layer >= {threshold}", "majority", "control (mean)"], summary), ""]
  for s, r in results.items():
    rows = [[layer, _fmt(r["heldout_acc"][layer]), _fmt(r["train_acc"][layer]), _fmt(r["control_acc"][layer])]
            for layer in range(len(r["heldout_acc"]))]
    out += [f"### `{s}`", "", md_table(["layer", "held-out acc", "train acc", "control acc"], rows), "",
            f"![pca {s}](plots/{probe_plot_name(s)})", ""]
  return out


def probe_plot_name(spec: str) -> str:
  return "pca_" + spec.replace(":", "_") + ".png"


def masks_section(r: dict, domains) -> list:
  out = ["## Learned masks", "",
         "Hard-concrete removal gates per neuron with an L0 penalty, one set per domain, optimised with optax to "
         "raise that domain's answer loss (unlikelihood) while keeping the others' (NLL); saved as neuron sets in "
         "`neurons_learned/<module>.json`. Effects are measured on "
         f"{r['eval_n']} records{' after the training ones' if r['eval_start'] else ' (the training records: too few to hold out)'}.",
         ""]
  sizes = [[m, int(s.mask.any(axis=0).sum())] + [s.sizes()[d] for d in domains] for m, s in r["sets"].items()]
  out += [md_table(["module", "unique"] + list(domains), sizes), ""]
  if r.get("planted"):
    p = r["planted"]
    out += [f"Planted ground truth ({p['module']}, layer {p['layer']}, {p['per_domain']} neurons per domain): "
            f"precision **{p['precision']:.3f}**, recall **{p['recall']:.3f}**.", ""]
  if r["comparison"]:
    out += [f"Compared with the DAPE sets of `{r['compare_sets_dir']}`:", "",
            md_table(["module", "domain", "learned", "DAPE", "overlap", "Jaccard", "in any DAPE set"],
                     [[c["module"], c["domain"], c["learned"], c["dape"], c["overlap"], _fmt(c["jaccard"]),
                       c["in_any_dape"]] for c in r["comparison"]]), ""]
  else:
    out += ["No DAPE sets to compare with (set `--config.compare_sets_dir` to an MMNeuron run directory).", ""]
  eff = r["effects"]
  base_nll, base_top1 = eff["none"]["nll"], eff["none"]["top1"]
  header = ["domain", "answer NLL (none)"] + [f"{n}: own / others" for n in eff if n != "none"]
  rows = []
  for g, d in enumerate(domains):
    row = [d, _fmt(base_nll[g])]
    for n, e in eff.items():
      if n == "none":
        continue
      nll = np.asarray(e["nll"])
      others = np.delete(nll[g], g) - np.delete(np.asarray(base_nll), g)
      row.append(f"{signed(nll[g, g] - base_nll[g])} / {signed(others.mean() if len(others) else 0)} ({e['sizes'][d]} off)")
    rows.append(row)
  out += ["Teacher-forced answer NLL when a domain's own neurons are removed: change on that domain / mean change "
          "on the other domains (neurons removed):", "", md_table(header, rows), "",
          "![mask effects](plots/mask_effects.png)", ""]
  top_rows = [[d, _fmt(base_top1[g], 2)] + [_fmt(np.asarray(e["top1"])[g, g], 2) for n, e in eff.items() if n != "none"]
              for g, d in enumerate(domains)]
  out += ["Answer-token top-1 accuracy of the own domain:", "",
          md_table(["domain", "none"] + [n for n in eff if n != "none"], top_rows), ""]
  if r["accuracy"]:
    conds = list(dict.fromkeys(a["condition"] for a in r["accuracy"]))
    acc = {(a["condition"], a["domain"]): a["primary"] for a in r["accuracy"]}
    out += ["Generated answers, primary metric (own domain's neurons removed):", "",
            md_table(["domain"] + conds, [[d] + [_fmt(acc.get((c, d), float("nan"))) for c in conds] for d in domains]),
            ""]
  return out


def write(workdir, *, config, model_id, domains, bad, model, results) -> str:
  plots = paths.join(workdir, "plots")
  paths.makedirs(plots)
  out = [f"# Readouts run: {model_id}", ""] + model_card.describe(
      config, workdir, planted=config.data.get("source") == "planted") + [
         f"Config: `config.json`. Prompt: `{config.prompt}`. Domains: {', '.join(domains)}. "
         f"LLM: {model.probe_modules['llm'][0]} layers. Bad records skipped: {len(bad)}.", ""]
  if "tuned_lens" in results:
    plot_tuned_lens(results["tuned_lens"], paths.join(plots, "tuned_lens.png"))
    out += tuned_lens_section(results["tuned_lens"])
  if "probes" in results:
    plot_probe_accuracy(results["probes"], paths.join(plots, "probe_accuracy.png"))
    for spec, r in results["probes"].items():
      plot_projection(r, spec, paths.join(plots, probe_plot_name(spec)))
    out += probes_section(results["probes"], config.probes.threshold)
  if "masks" in results:
    plot_mask_effects(results["masks"]["effects"], domains, paths.join(plots, "mask_effects.png"))
    out += masks_section(results["masks"], domains)
  out += ["All numbers: `readouts.json`. These readouts go beyond the MMNeuron and MINER papers (docs/QUIRKS.md).", ""]
  path = paths.join(workdir, "report.md")
  with paths.open(path, "w") as f:
    f.write("\n".join(out))
  return path
