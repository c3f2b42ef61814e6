"""MINER plots that read right: an all-equal plot says so in its title, coinciding series get distinct
markers and x offsets, and the scores-by-layer figure uses both (checked on its matplotlib artists)."""
import numpy as np

from mmneuron_jax.tasks.miner import plot_style, report


def test_flat_title_and_offsets():
  assert plot_style.flat_title("mean", [[0.5, 0.5], [0.5, np.nan]]) == "mean\n(all values equal: 0.5)"
  assert plot_style.flat_title("mean", [0.5, 0.6]) == "mean"
  offsets = [plot_style.offset(i, 3) for i in range(3)]
  assert offsets == [-0.125, 0.0, 0.125] and plot_style.offset(0, 1) == 0.0
  assert len({plot_style.marker(i) for i in range(4)}) == 4


def test_scores_by_layer_marks_equal_panels_and_separates_series():
  equal = np.ones((5, 2, 3, 4))  # every score panel flat: the two modalities coincide
  combined = np.arange(24, dtype=float).reshape(2, 3, 4)
  axes = report.plot_scores_by_layer(equal, combined, ["text", "image"]).axes
  assert [ax.get_title().endswith("(all values equal: 1)") for ax in axes] == [True] * 5 + [False]
  xs = [line.get_xdata() for line in axes[0].get_lines()]
  assert np.allclose(xs[1] - xs[0], 0.25) and axes[0].get_xlabel() == "layer (0-based)"
  assert axes[0].get_lines()[0].get_marker() != axes[0].get_lines()[1].get_marker()
