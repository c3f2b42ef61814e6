"""MINER `last_token` stage (Finding III): per layer, the share of the last prompt token's attention
(head mean, the model's causal attention) that lands on each modality's tokens, with no neuron
changed and with each modality's selected neurons switched off (and all of them).

Prefill forwards only (right padded, `analysis/miner_last_token.LastTokenAttention` in the scan);
conditions as the deactivation stage (`tasks/miner/deactivation.condition_masks`, same value
'zero' / 'min'). Writes last_token.json and returns report lines (plots/last_token.png).
"""

import numpy as np

from mmneuron_jax.io import paths
from mmneuron_jax.analysis import miner
from mmneuron_jax.analysis.miner_last_token import LastTokenAttention, modality_mass
from mmneuron_jax.data.inputs.batching import chunks
from mmneuron_jax.io.progress import Progress
from mmneuron_jax.tasks.miner import deactivation as miner_deactivation, plot_style
from mmneuron_jax.tasks.miner.inputs import pad_to
from mmneuron_jax.tasks.common.plots import finish, new_figure
from mmneuron_jax.tasks.common.tables import md_table, write_tables


def conditions(cfg_conditions, names) -> list:
  """config.last_token.conditions with 'each' expanded to every selected modality."""
  out = []
  for c in cfg_conditions:
    out += list(names) if c == "each" else [c]
  return list(dict.fromkeys(out))


def token_masks(batch, ids, stored) -> np.ndarray:
  """Prepared batch -> bool[B, M, T] over the stored modalities (padding in none)."""
  masks = miner.token_modality_masks(batch["input_ids"], None, batch.get("attention_mask"), special_ids=ids["special"],
                                     image_ids=ids["image"], video_ids=ids["video"], audio_ids=ids["audio"])
  idx = [miner.MODALITY_INDEX[m] for m in stored]
  return np.swapaxes(np.asarray(masks)[idx], 0, 1)


def dataset_mass(model, params, inputs, samples, ids, stored, masks_by_condition, cfg, progress=None) -> dict:
  """-> {condition: float64[L, M] mean over the samples}, plus 'present': int[M] samples with the modality."""
  layers = model.probe_modules["llm"][0]
  sums = {c: np.zeros((layers, len(stored))) for c in masks_by_condition}
  present = np.zeros(len(stored), np.int64)
  for chunk in chunks(samples, cfg.batch_size):
    batch, _ = pad_to(inputs.batch(chunk, "right"), cfg.batch_size, cfg.length_bucket, inputs.pad_id)
    batch = model.prepare(batch)
    tm = token_masks(batch, ids, stored)[:len(chunk)]
    present += tm.any(-1).sum(0)
    probe = LastTokenAttention(attention_mask=np.asarray(batch["attention_mask"]) != 0)
    for c, m in masks_by_condition.items():
      out = model.apply(params, batch, masks=m, probe={"llm": probe})
      rows = np.asarray(out.probe["llm"], np.float64)[:, :len(chunk)]
      sums[c] += modality_mass(rows, tm).sum(1)
    if progress is not None:
      progress.update(len(chunk))
  return {**{c: s / max(len(samples), 1) for c, s in sums.items()}, "present": present}


def table(res: dict) -> list:
  """last_token.json as rows for CSV: one per (dataset, condition, layer (0-based)) with `mass.<modality>`."""
  return [{"dataset": d, "condition": c, "layer": l, "n": r["n"], "mass": dict(zip(res["modalities"], m))}
          for d, r in res["datasets"].items() for c in res["conditions"] for l, m in enumerate(r["mass"][c])]


def run(workdir, config, *, model, params, inputs, samples, ids, stored, selected, names, layer_min) -> dict:
  """The stage -> its results (also written to last_token.json)."""
  cfg = config.last_token
  value = config.deactivate.value
  conds = conditions(cfg.conditions, names)
  masks = {}
  for c in conds:
    scale, offset = miner_deactivation.condition_masks(c, selected, names, value, layer_min, config.seed)
    masks[c] = miner_deactivation.model_masks(scale, offset, value)  # 'none' too: one compiled forward
  evals = {d: s[:int(cfg.n_per_dataset) or None] for d, s in samples.items()}
  progress = Progress(sum(map(len, evals.values())), "MINER last-token attention (samples)", unit="samples")
  per = {d: dataset_mass(model, params, inputs, s, ids, stored, masks, cfg, progress) for d, s in evals.items()}
  progress.close()
  out = {"modalities": list(stored), "conditions": conds, "value": value,
         "datasets": {d: {"n": len(evals[d]), "present": dict(zip(stored, r["present"].tolist())),
                          "mass": {c: r[c].tolist() for c in conds}} for d, r in per.items()}}
  paths.write_json(paths.join(workdir, "last_token.json"), out, indent=1)
  write_tables(paths.join(workdir, "last_token.json"), {"": table(out)})
  return out


def shown_modalities(res, dataset) -> list:
  return [m for m in res["modalities"] if res["datasets"][dataset]["present"][m] > 0]


def section(workdir, res) -> list:
  plots = paths.join(workdir, "plots")
  paths.makedirs(plots)
  plot(res, paths.join(plots, "last_token.png"))
  lines = ["## Finding III: information converging to the last token", "",
           "Per layer, the share of the last prompt token's attention (mean over heads, the model's causal "
           "attention) on each modality's tokens, mean over the samples; columns `m | c` = mass on modality m's "
           f"tokens under condition c (`none`: no neuron off; `<modality>` / `all`: those selected neurons off, value "
           f"**{res['value']}**).", "", "![last token](plots/last_token.png)", ""]
  for d, r in res["datasets"].items():
    mods = shown_modalities(res, d)
    header = ["layer"] + [f"{m} \\| {c}" for m in mods for c in res["conditions"]]
    L = len(next(iter(r["mass"].values())))
    table = [[l] + [r["mass"][c][l][res["modalities"].index(m)] for m in mods for c in res["conditions"]]
             for l in range(L)]
    lines += [f"### {d} ({r['n']} samples)", "", md_table(header, table), ""]
  return lines


def plot(res, path=None):
  datasets = list(res["datasets"])
  width = max(len(shown_modalities(res, d)) for d in datasets)
  fig = new_figure(3.4 * width, 2.8 * len(datasets))
  axes = fig.subplots(len(datasets), width, squeeze=False)
  for i, d in enumerate(datasets):
    r = res["datasets"][d]
    mods = shown_modalities(res, d)
    for j in range(width):
      ax = axes[i][j]
      if j >= len(mods):
        ax.axis("off")
        continue
      m = mods[j]
      k = res["modalities"].index(m)
      conds = res["conditions"]
      ys = [np.asarray(r["mass"][c])[:, k] for c in conds]
      for n, (c, y) in enumerate(zip(conds, ys)):  # marker + x offset per condition: equal lines stay visible
        ax.plot(np.arange(len(y)) + plot_style.offset(n, len(conds)), y, marker=plot_style.marker(n), markersize=3,
                label=c, ls="-" if c == "none" else "--")
      ax.set(title=plot_style.flat_title(f"{d}: to {m} tokens", ys), ylabel="attention mass", ylim=(0, 1.02))
      plot_style.integer_layers(ax, len(ys[0]))
      if i == 0 and j == 0:
        ax.legend(fontsize=6, handlelength=3)  # long enough handles to show solid vs dashed
  return finish(fig, path, dpi=100)
