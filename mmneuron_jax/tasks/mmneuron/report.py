"""report.md with tables and PNG plots for an MMNeuron run."""

import numpy as np

from mmneuron_jax.io import paths
from mmneuron_jax.tasks.common.plots import (LEGEND, finish, flat_note, integer_ticks, new_figure,
                                             plot_layer_distribution, series_style)
from mmneuron_jax.tasks.common.tables import md_table, signed
from mmneuron_jax.tasks.compare import side_by_side
from mmneuron_jax.tasks.common import model_card


def plot_lens(lens_results: dict, path: str | None = None, where: str = "all positions"):
  """Logit lens per LLM layer, a line per domain: mean entropy (also at image tokens when the
  results hold it) and mean top-1 probability -> Figure (PNG to `path`). `lens_results`:
  {domain: {'entropy': [L], 'top1_prob': [L], 'entropy_image': [L] (optional)}}."""
  with_image = all("entropy_image" in r for r in lens_results.values())
  fig = new_figure(16 if with_image else 11, 4)
  axes = fig.subplots(1, 3 if with_image else 2)
  n = len(lens_results)
  for i, (domain, r) in enumerate(lens_results.items()):
    layers = np.arange(len(r["entropy"]))  # from 0, like every table
    axes[0].plot(layers, r["entropy"], label=domain, **series_style(i, n))
    axes[-1].plot(layers, r["top1_prob"], label=domain, **series_style(i, n))
    if with_image:
      axes[1].plot(layers, r["entropy_image"], label=domain, **series_style(i, n))
  note = lambda key: flat_note([r[key] for r in lens_results.values()])
  axes[0].set(xlabel="LLM layer (from 0)", ylabel="mean entropy (nats)", title=f"Logit lens, {where}{note('entropy')}")
  if with_image:
    axes[1].set(xlabel="LLM layer (from 0)", ylabel="mean entropy (nats)",
                title=f"Logit lens at image tokens{note('entropy_image')}")
  axes[-1].set(xlabel="LLM layer (from 0)", ylabel="mean top-1 probability",
               title=f"Top-1 confidence, {where}{note('top1_prob')}")
  for ax in axes:
    integer_ticks(ax)
  axes[0].legend(fontsize=8, **LEGEND)
  return finish(fig, path, dpi=110)


def plot_deactivation(rows: list, metric: str, path: str | None = None):
  """`metric` per domain, a bar per (condition, control) -> Figure (PNG to `path`)."""
  domains = sorted({r["domain"] for r in rows}, key=[r["domain"] for r in rows].index)
  keys = sorted({(r["condition"], r["control"]) for r in rows}, key=[(r["condition"], r["control"]) for r in rows].index)
  fig = new_figure(max(6, 1.6 * len(domains)), 4)
  ax = fig.subplots()
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
  # beside the axes: the bars reach 1.0, where a legend inside would hide them
  ax.legend(fontsize=7, ncol=1, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  return finish(fig, path, dpi=110, bbox_inches="tight")


METRICS = ("primary", "authors", "standard", "vqa_accuracy", "anls", "anls_1.0", "letter_accuracy", "exact_match")
# The authors' projector condition masked nothing (mask_model.py tests for the key "mmprj" but their
# mask dict holds "mmproj"): their table's projector row equals their no-mask row.
PROJECTOR_NOTE = ("`projector`: here the projector's domain neurons are switched off. The authors' projector "
                  "condition masked nothing (their code looks for the key `mmprj`, the masks sit under `mmproj`), "
                  "so in the paper's table the projector row equals the no-mask row; compare this row with "
                  "theirs knowing that.")


def _label(condition: str) -> str:
  return f"{condition} †" if condition == "projector" else condition


def condition_keys(rows):
  return sorted({(r["condition"], r["control"]) for r in rows}, key=[(r["condition"], r["control"]) for r in rows].index)


def primary_matrix(rows):
  """[[domain, 'value (delta)', ...]] for every (condition, control)."""
  table = []
  for domain in sorted({r["domain"] for r in rows}, key=[r["domain"] for r in rows].index):
    mine = {(r["condition"], r["control"]): r["primary"] for r in rows if r["domain"] == domain}
    base = mine.get(("none", "dape"), float("nan"))
    table.append([domain] + [f"{mine[k]:.3f} ({signed(mine[k] - base)})" for k in condition_keys(rows)])
  return table


def header_section(config, model_id, workdir=None, rows=(), domains=(), **_) -> list[str]:
  card = model_card.describe(config, workdir) if workdir else []
  top = model_card.headline(list(rows), list(domains), top_rate=config.dape.top_rate)
  return [f"# MMNeuron run: {model_id}", ""] + card + top + [
          f"Config: `config.json`. Statistics positions: **{config.stats.positions}**; "
          f"DAPE top_rate={config.dape.top_rate}, filter_rate={config.dape.filter_rate}, "
          f"bar_ratio={config.dape.bar_ratio}.", ""]


def protocol_section(config, domains, used=None, family=None, stats_plan=None, used_counts=None, **_) -> list[str]:
  """What this run did, first: splits and order, sample counts, prompts, metric, generation, and how
  many records statistics and evaluation share (in bold when any)."""
  used = used or {}
  c, lines = config, ["## Protocol", ""]
  order = c.data.get("order", "authors")
  lines.append(f"- Data: source `{c.data.source}`, order `{order}`"
               + (" (the authors' per-dataset shuffles)" if order == "authors" and c.data.source == "paper" else
                  " (sha256 of seed and id)" if c.data.source != "paper" or order == "sha256" else "") + ".")
  lines.append(f"- Splits: statistics `{c.stats.get('split', 'train')}`, evaluation `{c.eval.get('split', 'val')}`, "
               f"logit lens `{c.lens.get('split', 'train')}`; the ids each stage used are in `records_used.json`.")
  if stats_plan:
    lines.append("- Statistics samples: " + ", ".join(f"{d} {stats_plan[d]['samples']}" for d in domains if d in stats_plan)
                 + f" (until {c.stats.vision_tokens_per_domain or '-'} vision tokens or "
                 f"{c.stats.max_samples_per_domain or 'no'} sample cap per domain).")
  for stage, what in (("eval", "Evaluation"), ("lens", "Logit-lens")):
    if stage in used:
      counts = (used_counts or {}).get(stage, {})
      cap = c.get(stage).get("n_per_domain")
      lines.append(f"- {what} samples: {len(used[stage])}"
                   + (" (" + ", ".join(f"{d} {counts[d]}" for d in domains if d in counts) + ")" if counts else "")
                   + (f"; at most {cap} per domain." if cap else "; the whole split."))
  if "stats" in used and "eval" in used:
    shared = len(set(used["stats"]) & set(used["eval"]))
    lines.append(f"- Statistics and evaluation share {shared} record ids." if shared == 0 else
                 f"- **Statistics and evaluation share {shared} record ids: neurons were selected on samples they "
                 f"are then evaluated on.**")
  if family is not None:
    template = c.eval.get("template") or family.template
    style = c.eval.get("style") or family.style
    lines.append(f"- Prompts: statistics `\"<image>\\n{{question}}\"` (no template); evaluation template "
                 f"`{template}`, body style `{style}`; logit lens `{c.lens.get('prompt', 'authors')}` prompt with no "
                 f"template, at `{c.lens.get('positions', 'all')}` positions.")
  metric = c.eval.get("metric", "authors")
  lines.append(f"- Metric (the `primary` column): `{metric}`" + (
      " (the authors' per-domain metrics: VQAv2 lowercased exact match against confident answers, medical any "
      "output character equal to the label letter, remote sensing lowercased exact match against the first "
      "answer, documents ANLS at threshold 1.0; auto-driving, judged by the Lingo-Judge model in the paper, "
      "falls back to ANLS). The standard metrics sit beside it." if metric == "authors" else "."))
  gen = (f"{c.eval.max_new_tokens} new tokens" if c.eval.max_new_tokens > 0 else
         f"max_length {c.eval.get('max_length', 0)} (prompt + answer, the image counted as "
         f"{getattr(family, 'prompt_image_tokens', 1)} token(s))")
  sampling = ("greedy (the authors sampled at temperature 0.9, unseeded)" if c.eval.temperature <= 0 else
              f"sampled at temperature {c.eval.temperature}, seed {c.seed}")
  lines.append(f"- Generation: {gen}, {sampling}, batch {c.eval.batch_size}.")
  return lines + [""]


def data_section(domains, bad, stats_plan, **_) -> list[str]:
  return ["## Data", "", md_table(["domain", "stats samples", "vision tokens"],
                                  [[d, stats_plan[d]["samples"], stats_plan[d]["vision_tokens"]] for d in domains]),
          "", f"Bad records skipped: **{len(bad)}**" + ("" if not bad else ": " + ", ".join(
              f"`{i}` ({why})" for i, why in bad[:20]) + (" ..." if len(bad) > 20 else "")), ""]


def neurons_section(workdir, domains, sets, summaries, **_) -> list[str]:
  plot_layer_distribution(list(sets.values()), paths.join(workdir, "plots", "neurons_per_layer.png"))
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
    plot_deactivation(rows, m, paths.join(workdir, "plots", f"deactivation_{m}.png"))
  out = ["## Deactivation", "", "Each domain is evaluated with its own neurons removed; `random` removes the same "
         "number of random neurons per layer.", ""]
  if conditions:
    out += ["Conditions (modules whose domain neurons are off): " + "; ".join(
        f"`{c}` = {', '.join(mods) or 'nothing'}" for c, mods in conditions.items()) + ".", ""]
  projector = any(r["condition"] == "projector" for r in rows)
  if "primary" in metrics:
    out += ["Primary metric per domain (`primary`: see Protocol; `authors` = the authors' metric, `standard` = "
            "ANLS for driving and documents, letter accuracy for medical, exact match for remote sensing, VQA "
            "accuracy for common scenes); change vs `none` in brackets:", "",
            md_table(["domain"] + [f"{_label(c)} ({k})" for c, k in condition_keys(rows)], primary_matrix(rows)), ""]
    out += [f"† {PROJECTOR_NOTE}", ""] if projector else []
  header = ["domain", "condition", "control", "neurons off", "n"] + metrics
  out += [md_table(header, [[r["domain"], _label(r["condition"]), r["control"], r["neurons_off"], r["n"]] +
                            [r[m] for m in metrics] for r in rows]), ""]
  out += [f"† {PROJECTOR_NOTE}", ""] if projector else []
  return out + [f"![deactivation](plots/deactivation_{m}.png)" for m in metrics[:2]] + [""]


def lens_section(workdir, domains, lens_results, config=None, **_) -> list[str]:
  if not lens_results:
    return []
  where = "all positions" if config is None or config.lens.get("positions", "all") == "all" else "image tokens"
  plot_lens(lens_results, paths.join(workdir, "plots", "logit_lens.png"), where)
  n_layers = len(next(iter(lens_results.values()))["entropy"])
  with_image = where == "all positions" and all("entropy_image" in lens_results[d] for d in domains)
  header = (["layer"] + [f"{d} H" for d in domains] + ([f"{d} H image" for d in domains] if with_image else []) +
            [f"{d} top-1" for d in domains])
  table = [[layer] + [float(lens_results[d]["entropy"][layer]) for d in domains] +
           ([float(lens_results[d]["entropy_image"][layer]) for d in domains] if with_image else []) +
           [f"{lens_results[d]['top1'][layer]} ({lens_results[d]['top1_prob'][layer]:.2f})" for d in domains]
           for layer in range(n_layers)]
  return [f"## Logit lens, {where}", "", f"Mean entropy (nats) per LLM layer (numbered from 0) at {where}"
          + (" and at image tokens (`H image`)" if with_image else "") + "; top-1 token and its mean probability.",
          "", "![logit lens](plots/logit_lens.png)", "", md_table(header, table), ""]


def compare_section(workdir, config, **_) -> list[str]:
  """This run next to the runs in `config.compare_with` (tasks/compare/side_by_side.py)."""
  others = list(config.get("compare_with") or ())
  if not others:
    return []
  return side_by_side.section([side_by_side.load_run(d) for d in [workdir] + others], paths.join(workdir, "plots"),
                              md_table)


# The report, in order; each section is f(**results) -> markdown lines ([] = left out).
SECTIONS = [header_section, protocol_section, data_section, neurons_section, deactivation_section, lens_section,
            compare_section]


def write(workdir, *, extra_sections=(), **results) -> str:
  """report.md from the run's results (keyword arguments of the SECTIONS: config, model_id, domains,
  bad, stats_plan, totals, sets, summaries, rows, lens_results, conditions, used, used_counts, family);
  `extra_sections` are
  more section functions, appended before the side-by-side comparison."""
  paths.makedirs(paths.join(workdir, "plots"))
  sections = SECTIONS[:-1] + list(extra_sections) + SECTIONS[-1:]
  out = []
  for section in sections:
    out += section(workdir=workdir, **results)
  path = paths.join(workdir, "report.md")
  with paths.open(path, "w") as f:
    f.write("\n".join(out))
  return path
