"""Plots of neuron sets the studies draw (per-layer counts, depth profiles, overlap matrices);
the numbers come from `analysis` (pure), the PNGs are written here. Every plot function returns its
`matplotlib.figure.Figure` (Jupyter shows it) and writes the PNG when given a path; no pyplot, so no
global figure state and no backend switch.

Conventions every report's plots and tables follow (helpers below): layers are numbered from 0
(layer 0 = the module's first layer, as in the neuron sets, the atlas and the error messages);
layer and count axes have integer ticks; a panel whose values are all equal says so in its title;
series that may coincide get distinct markers of decreasing size, so one drawn over another stays
visible; legends draw handles long enough to show dashed vs solid lines.
"""
import functools
import io

import numpy as np

from mmneuron_jax.analysis import compare
from mmneuron_jax.io import paths

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LEGEND = {"handlelength": 3.0}  # long enough that "--" and "-" read apart


def series_style(i: int, n: int = 1) -> dict:
  """plot() keywords of series i of n: its own marker, shrinking with i (and drawn later, on top),
  so series with equal values stay visible as nested markers."""
  return {"marker": MARKERS[i % len(MARKERS)], "markersize": 3.0 + 4.0 * (n - 1 - i) / max(n - 1, 1),
          "zorder": 2 + i}


def flat_note(values) -> str:
  """'\n(every value is X)' when all finite `values` (numbers, arrays or ragged nested lists of them)
  are equal (a flat plot reads as empty axes), else ''."""
  v = _flat(values)
  v = v[np.isfinite(v)]
  if v.size == 0:
    return "\n(no finite values)"
  return f"\n(every value is {v[0]:.4g}: nothing to compare)" if np.all(v == v[0]) else ""


def _flat(values) -> np.ndarray:
  """float64[n] of every number in a (possibly ragged) nest of lists / tuples / arrays."""
  if isinstance(values, (list, tuple)):
    parts = [_flat(v) for v in values]
    return np.concatenate(parts) if parts else np.zeros((0,), np.float64)
  return np.asarray(values, np.float64).ravel()


def integer_ticks(ax, x: bool = True, y: bool = False) -> None:
  """Integer tick locations on the x (layers) and/or y (counts) axis."""
  from matplotlib.ticker import MaxNLocator
  if x:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  if y:
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


@functools.cache
def _figure_class():
  from matplotlib.figure import Figure

  class ShownFigure(Figure):
    """A Figure that Jupyter / IPython shows as a PNG without pyplot or `%matplotlib inline`."""

    def _repr_png_(self):
      buf = io.BytesIO()
      self.savefig(buf, format="png", dpi=100, bbox_inches="tight")
      return buf.getvalue()

  return ShownFigure


def new_figure(width: float, height: float):
  """A `matplotlib.figure.Figure` built without pyplot (savefig uses the Agg canvas); a notebook
  shows it as a PNG."""
  return _figure_class()(figsize=(width, height))


def finish(fig, path: str | None = None, dpi: int = 110, **savefig_kwargs):
  """tight_layout, then the PNG to `path` when given; -> `fig`."""
  fig.tight_layout()
  if path is not None:
    paths.savefig(fig, path, dpi=dpi, format="png", **savefig_kwargs)  # a local path or a URL
  return fig


def plot_layer_distribution(sets: list, path: str | None = None):
  """Neurons per layer per group, one panel per NeuronSet (module) -> Figure (PNG to `path`)."""
  sets = list(sets)
  if not sets:
    raise ValueError("plot_layer_distribution needs at least one NeuronSet")

  fig = new_figure(4.8 * len(sets), 3.8)
  axes = fig.subplots(1, len(sets), squeeze=False)
  for ax, s in zip(axes[0], sets):
    counts = s.mask.sum(axis=2)  # [G, L]
    layers = np.arange(s.layers)
    if s.layers > 1:
      for g, name in enumerate(s.group_names):
        ax.plot(layers, counts[g], label=name, **series_style(g, len(s.group_names)))
    else:
      ax.bar(np.arange(len(s.group_names)), counts[:, 0], color=[f"C{g}" for g in range(len(s.group_names))])
      ax.set_xticks(np.arange(len(s.group_names)), s.group_names, rotation=20, fontsize=8)
    ax.set(title=f"{s.module} ({s.layers}x{s.width}, {int(s.mask.any(axis=0).sum())} unique){flat_note(counts)}",
           xlabel="layer (from 0)" if s.layers > 1 else "group", ylabel="# neurons")
    integer_ticks(ax, x=s.layers > 1, y=True)
    if s.layers > 1:
      ax.legend(fontsize=7, **LEGEND)
  fig.suptitle(sets[0].model_id, fontsize=9)
  return finish(fig, path, dpi=110)


def plot_depth(entries, path: str | None = None, bins: int = 10):
  """entries [(label, NeuronSet)] -> Figure (PNG to `path`): fraction of each group's neurons per
  relative-depth bin."""
  entries = list(entries)
  if not entries:
    raise ValueError("plot_depth needs at least one (label, NeuronSet)")
  fig = new_figure(4.6 * len(entries), 3.6)
  axes = fig.subplots(1, len(entries), squeeze=False)[0]
  centres = (np.arange(bins) + 0.5) / bins
  for ax, (label, s) in zip(axes, entries):
    hist = compare.depth_histogram(s, bins)
    for g, name in enumerate(s.group_names):
      ax.plot(centres, hist[g], label=name, **series_style(g, len(s.group_names)))
    ax.set(title=f"{label}\n{s.module} ({s.layers}x{s.width}){flat_note(hist)}", xlabel="relative depth",
           ylabel="fraction of set", xlim=(0, 1))
    ax.legend(fontsize=7, **LEGEND)
  return finish(fig, path, dpi=100)


def plot_matrix(matrix, rows, cols, path: str | None, title: str):
  """A labelled heat map of float[R, C] (e.g. Jaccard) -> Figure (PNG to `path`)."""
  m = np.asarray(matrix, np.float64)
  fig = new_figure(1.2 + 0.7 * len(cols), 1.2 + 0.55 * len(rows))
  ax = fig.subplots()
  im = ax.imshow(m, cmap="viridis", vmin=0.0, vmax=max(1e-12, m.max()))
  ax.set_xticks(range(len(cols)), cols, rotation=30, fontsize=7)
  ax.set_yticks(range(len(rows)), rows, fontsize=7)
  for i in range(m.shape[0]):
    for j in range(m.shape[1]):
      ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7,
              color="k" if m[i, j] > 0.6 * m.max() else "w")
  ax.set_title(title + flat_note(m), fontsize=9)
  fig.colorbar(im, ax=ax, fraction=0.046)
  return finish(fig, path, dpi=100)
