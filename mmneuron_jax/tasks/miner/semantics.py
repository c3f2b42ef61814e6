"""MINER `semantics` stage (Finding IV: semantic probing and semantic telomeres; see
`analysis/miner_semantics.py` for what is measured and why it is a reading of the paper's pictures).

For the first `semantics.n_per_dataset` samples of each dataset: the LLM residual stream h_l (output
of every layer) at every valid prompt token (the logit-lens hook, `Lens(hidden=True)`), each token
labelled by its modality (the partition text / special / image / video / audio of stage 1). Per
layer: the nearest-neighbour shares between modalities (within each sample, cosine), next to chance,
and a 2-D PCA picture at the first, middle and last layers. Writes semantics.json, returns report lines.
"""

import numpy as np

from mmneuron_jax.io import paths
from mmneuron_jax.analysis import miner, miner_semantics
from mmneuron_jax.analysis.logit_lens import positions_where
from mmneuron_jax.nn.logit_lens import Lens
from mmneuron_jax.data.inputs.batching import chunks
from mmneuron_jax.tasks.miner import plot_style
from mmneuron_jax.tasks.miner.inputs import pad_to
from mmneuron_jax.tasks.common.plots import finish, new_figure
from mmneuron_jax.tasks.common.tables import md_table, write_tables

PARTITION = ("text", "special", "image", "video", "audio")
MEDIA = ("image", "video", "audio")


def token_states(model, params, inputs, samples, ids, cfg) -> tuple:
  """-> (h float32[L, N, D] every valid token of `samples`, labels int[N] into PARTITION, sample int[N])."""
  hs, labels, owners = [], [], []
  for c, chunk in enumerate(chunks(samples, cfg.batch_size)):
    batch, _ = pad_to(inputs.batch(chunk, "right"), cfg.batch_size, cfg.length_bucket, inputs.pad_id)
    batch = model.prepare(batch)
    valid = np.asarray(batch["attention_mask"]) != 0
    masks = np.asarray(miner.token_modality_masks(batch["input_ids"], None, valid, special_ids=ids["special"],
                                                  image_ids=ids["image"], video_ids=ids["video"],
                                                  audio_ids=ids["audio"]))
    lab = np.argmax(masks[[miner.MODALITY_INDEX[m] for m in PARTITION]], axis=0)     # [B, T]
    positions = positions_where(valid)
    pad = -positions.shape[1] % 32
    padded = np.pad(positions, ((0, 0), (0, pad)), constant_values=-1)
    out = model.apply(params, batch, lens=Lens(padded, None, 1, hidden=True))
    hidden = np.asarray(out.lens["hidden"], np.float32)                              # [L, B, P, D]
    for b in range(len(chunk)):
      p = positions[b][positions[b] >= 0]
      hs.append(hidden[:, b, :len(p)])
      labels.append(lab[b, p])
      owners.append(np.full(len(p), c * cfg.batch_size + b))
  return np.concatenate(hs, axis=1), np.concatenate(labels), np.concatenate(owners)


def run(workdir, config, *, model, params, inputs, samples, ids) -> dict:
  cfg = config.semantics
  out = {"modalities": list(PARTITION), "datasets": {}}
  pictures = {}
  for d, s in samples.items():
    s = s[:int(cfg.n_per_dataset) or None]
    h, labels, owners = token_states(model, params, inputs, s, ids, cfg)
    shares = np.stack([miner_semantics.nearest_neighbour_shares(h[l], labels, owners, len(PARTITION))
                       for l in range(h.shape[0])])
    chance = miner_semantics.chance_shares(labels, owners, len(PARTITION))
    out["datasets"][d] = {"n": len(s), "tokens": dict(zip(PARTITION, np.bincount(labels, minlength=len(PARTITION)).tolist())),
                          "shares": np.where(np.isnan(shares), None, shares).tolist(),
                          "chance": np.where(np.isnan(chance), None, chance).tolist()}
    L = h.shape[0]
    pictures[d] = {l: miner_semantics.pca2(h[l]) for l in sorted({0, L // 2, L - 1})}, labels
  paths.write_json(paths.join(workdir, "semantics.json"), out, indent=1)
  write_tables(paths.join(workdir, "semantics.json"), {"": table(out)})
  plots = paths.join(workdir, "plots")
  paths.makedirs(plots)
  plot_shares(out, paths.join(plots, "semantics_shares.png"))
  plot_pca(pictures, paths.join(plots, "semantics_pca.png"))
  return out


def pairs(res, d) -> list:
  """(source, target) pairs shown: media -> text (probing), special -> text (telomeres)."""
  tokens = res["datasets"][d]["tokens"]
  return [(m, "text") for m in MEDIA if tokens[m]] + ([("special", "text")] if tokens["special"] else [])


def _f(x):
  return "" if x is None else f"{x:.3f}"


def table(res: dict) -> list:
  """semantics.json as rows for CSV: one per (dataset, layer (0-based), modality a) with `share.<b>` (the
  share of a's tokens whose nearest neighbour is a b token) and `chance.<b>` (empty where undefined)."""
  mods = res["modalities"]
  return [{"dataset": d, "layer": l, "modality": a, "share": dict(zip(mods, r["shares"][l][i])),
           "chance": dict(zip(mods, r["chance"][i]))}
          for d, r in res["datasets"].items() for l in range(len(r["shares"])) for i, a in enumerate(mods)]


def section(workdir, res) -> list:
  lines = ["## Finding IV: semantic probing and semantic telomeres", "",
           "Per layer, the share of a modality's tokens whose nearest neighbour (cosine, LLM residual stream, other "
           "tokens of the same sample) is a text token, next to chance (a uniformly random neighbour): *probing* = "
           "media tokens reaching out to text, *telomeres* = special tokens anchoring to text. The paper shows these "
           "as t-SNE pictures without numbers; this measure and the PCA picture are ours (docs/QUIRKS.md).", "",
           "![shares](plots/semantics_shares.png)", "", "![pca](plots/semantics_pca.png)", ""]
  idx = {m: i for i, m in enumerate(res["modalities"])}
  for d, r in res["datasets"].items():
    ps = pairs(res, d)
    if not ps:
      continue
    header = ["layer"] + [f"{a}->{b}" for a, b in ps]
    table = [[l] + [_f(r["shares"][l][idx[a]][idx[b]]) for a, b in ps] for l in range(len(r["shares"]))]
    table.append(["chance"] + [_f(r["chance"][idx[a]][idx[b]]) for a, b in ps])
    lines += [f"### {d} ({r['n']} samples, tokens {r['tokens']})", "", md_table(header, table), ""]
  return lines


def plot_shares(res, path=None):
  from matplotlib.lines import Line2D
  datasets = [d for d in res["datasets"] if pairs(res, d)] or list(res["datasets"])
  idx = {m: i for i, m in enumerate(res["modalities"])}
  fig = new_figure(3.8 * len(datasets), 3.2)
  axes = fig.subplots(1, len(datasets), squeeze=False)[0]
  for ax, d in zip(axes, datasets):
    r = res["datasets"][d]
    ps, ys = pairs(res, d), []
    for k, (a, b) in enumerate(ps):
      y = [np.nan if row[idx[a]][idx[b]] is None else row[idx[a]][idx[b]] for row in r["shares"]]
      ys.append(y)
      line = ax.plot(np.arange(len(y)) + plot_style.offset(k, len(ps)), y, marker=plot_style.marker(k),
                     markersize=3, label=f"{a}->{b}")[0]
      ch = r["chance"][idx[a]][idx[b]]
      if ch is not None:
        ax.axhline(ch, ls="--", lw=0.8, color=line.get_color())
    ax.set(title=plot_style.flat_title(d, ys), ylabel="nearest-neighbour share", ylim=(0, 1.02))
    plot_style.integer_layers(ax, len(r["shares"]))
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], ls="--", lw=0.8, color="0.4"))  # the legend names the dashed style too
    ax.legend(handles, labels + ["chance (dashed, pair's colour)"], fontsize=7, handlelength=3)
  return finish(fig, path, dpi=100)


def plot_pca(pictures, path=None):
  rows = list(pictures)
  cols = max(len(p[0]) for p in pictures.values())
  fig = new_figure(3.2 * cols, 3.0 * len(rows))
  axes = fig.subplots(len(rows), cols, squeeze=False)
  for i, d in enumerate(rows):
    by_layer, labels = pictures[d]
    for j, (layer, xy) in enumerate(by_layer.items()):
      ax = axes[i][j]
      for k, m in enumerate(PARTITION):
        sel = labels == k
        if sel.any():
          ax.scatter(xy[sel, 0], xy[sel, 1], s=4, label=m)
      ax.set(title=f"{d}: layer {layer}", xticks=[], yticks=[])
      if i == 0 and j == 0:
        ax.legend(fontsize=6, markerscale=2)
  return finish(fig, path, dpi=100)
