"""What the MINER plots share so they read right: a marker and a small x offset per series (series
that coincide stay visible side by side), a title that says when every value is equal (instead of
empty-looking axes), integer layer ticks, and one layer numbering (0-based, as the tables)."""
import numpy as np

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LAYER_LABEL = "layer (0-based)"


def marker(i: int) -> str:
  return MARKERS[i % len(MARKERS)]


def offset(i: int, n: int, spread: float = 0.25) -> float:
  """x shift of series i of n: evenly within +-spread/2 (0 for a single series)."""
  return 0.0 if n <= 1 else spread * (i / (n - 1) - 0.5)


def flat_title(title: str, values) -> str:
  """`title`, plus '(all values equal: v)' when every finite value is the same."""
  v = np.asarray([x for x in np.ravel(np.asarray(values, dtype=float)) if np.isfinite(x)])
  if v.size and np.all(v == v[0]):
    return f"{title}\n(all values equal: {v[0]:.3g})"
  return title


def integer_layers(ax, n_layers: int) -> None:
  """Integer ticks 0..n_layers-1 (at most ~12 labels) on the x axis, labelled 0-based."""
  from matplotlib.ticker import MaxNLocator
  ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=min(max(n_layers, 1), 12)))
  ax.set_xlim(-0.5, n_layers - 0.5)
  ax.set_xlabel(LAYER_LABEL)
