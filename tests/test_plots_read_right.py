"""The report plots read right: a flat panel says so in its title, legends show the line styles
that tell series apart, coinciding series stay visible, layers are numbered from 0 with integer
ticks. Each plot function is run on small hand-made inputs and its Figure inspected (captured at
savefig, so this holds whether the function returns the Figure or only writes the PNG)."""
import matplotlib.figure
import numpy as np
import pytest

from mmneuron_jax.analysis.neuron_sets import NeuronSet
from mmneuron_jax.tasks.common import plots
from mmneuron_jax.tasks.compare import side_by_side
from mmneuron_jax.tasks.mmneuron import report as mmneuron_report
from mmneuron_jax.tasks.readouts import report as readouts_report


@pytest.fixture
def figures(monkeypatch):
  """The Figures that plot functions save, in order."""
  saved, savefig = [], matplotlib.figure.Figure.savefig

  def capture(self, *args, **kwargs):
    saved.append(self)
    return savefig(self, *args, **kwargs)

  monkeypatch.setattr(matplotlib.figure.Figure, "savefig", capture)
  return saved


def _integer_ticks(axis):
  ticks = axis.get_majorticklocs()
  return len(ticks) > 0 and all(float(t).is_integer() for t in ticks)


def _set(mask, module="llm"):
  return NeuronSet("m", module, ["a", "b", "c"], mask.shape[1], mask.shape[2], mask)


def test_flat_layer_counts_say_so_and_coinciding_series_stay_visible(figures, tmp_path):
  flat = _set(np.zeros((3, 4, 8), bool))
  varied = np.zeros((3, 4, 8), bool)
  varied[0, 1, :3] = varied[1, 1, :3] = True  # groups a and b coincide at every layer
  varied[2, 3, :5] = True
  plots.plot_layer_distribution([flat, _set(varied, "vision")], str(tmp_path / "layers.png"))
  ax_flat, ax_varied = figures[-1].axes
  assert "every value is 0: nothing to compare" in ax_flat.get_title()
  assert "every value is" not in ax_varied.get_title()
  a, b, c = ax_varied.get_lines()
  np.testing.assert_array_equal(a.get_ydata(), b.get_ydata())
  assert a.get_marker() != b.get_marker() and a.get_markersize() > b.get_markersize()  # b nests inside a
  assert b.get_zorder() > a.get_zorder()
  assert list(a.get_xdata()) == [0, 1, 2, 3]  # layers from 0
  assert _integer_ticks(ax_varied.xaxis) and _integer_ticks(ax_varied.yaxis)
  plots.plot_matrix(np.full((2, 2), 0.5), ["a", "b"], ["a", "b"], str(tmp_path / "m.png"), "Jaccard")
  assert "every value is 0.5" in figures[-1].axes[0].get_title()


def test_tuned_and_logit_lens_legends_show_their_line_styles(figures, tmp_path):
  L = 4
  curve = lambda x: {"kl": np.linspace(x, 0, L), "entropy": np.full(L, 2.0)}
  lens = lambda x: {"image": curve(x), "text": curve(x / 2), "answer": {
      "mean_rank": np.array([9.0, 4.0, 1.0, 0.0]), "top5": np.array([0.2, 0.5, 1.0, 1.0]), "top1": np.ones(L)}}
  readouts_report.plot_tuned_lens({"top_k": 5, "logit": lens(3.0), "tuned": lens(1.0)}, str(tmp_path / "t.png"))
  axes = figures[-1].axes
  legend = axes[0].get_legend()
  styles = {t.get_text(): h.get_linestyle() for t, h in zip(legend.get_texts(), legend.legend_handles)}
  assert styles == {"logit lens, image": "--", "logit lens, text": "--", "tuned lens, image": "-",
                    "tuned lens, text": "-"}
  assert legend.handlelength >= 3  # long enough to show a dash
  markers = {t.get_text(): h.get_marker() for t, h in zip(legend.get_texts(), legend.legend_handles)}
  assert markers["logit lens, image"] != markers["tuned lens, image"]  # told apart by marker too
  assert "every value is 2: nothing to compare" in axes[1].get_title()  # flat entropy in both lenses
  assert "every value is" not in axes[0].get_title()
  for ax in axes:
    assert _integer_ticks(ax.xaxis) and ax.get_lines()[0].get_xdata()[0] == 0


def test_probe_accuracy_and_lens_plots_number_layers_from_0(figures, tmp_path):
  r = {"heldout_acc": np.array([0.5, 0.9, 1.0]), "control_acc": np.array([0.5, 0.5, 0.5]), "majority": 0.5}
  readouts_report.plot_probe_accuracy({"hidden:token:domain": r}, str(tmp_path / "p.png"))
  ax = figures[-1].axes[0]
  held, control = ax.get_lines()[:2]
  assert list(held.get_xdata()) == [0, 1, 2] and _integer_ticks(ax.xaxis)
  assert (held.get_linestyle(), control.get_linestyle()) == ("-", ":") and held.get_marker() != control.get_marker()
  same = {"entropy": np.array([3.0, 2.0, 1.0]), "top1_prob": np.array([0.1, 0.1, 0.1])}
  mmneuron_report.plot_lens({"medical": same, "documents": dict(same)}, str(tmp_path / "l.png"))
  entropy_ax, top1_ax = figures[-1].axes
  m, d = entropy_ax.get_lines()
  assert list(m.get_xdata()) == [0, 1, 2] and _integer_ticks(entropy_ax.xaxis)
  assert m.get_marker() != d.get_marker() and m.get_markersize() > d.get_markersize()  # both visible
  assert "every value is 0.1" in top1_ax.get_title() and "every value" not in entropy_ax.get_title()
  assert "(from 0)" in entropy_ax.get_xlabel()


def test_compare_plots_flat_note_and_integer_counts(figures, tmp_path):
  mask = np.zeros((3, 4, 8), bool)
  mask[:, 2, :2] = True
  runs = [{"sets": {"llm": _set(mask)}, "lens": {}}, {"sets": {"llm": _set(mask.copy())}, "lens": {}}]
  side_by_side.plot_neurons(runs, ["x", "y"], str(tmp_path / "n.png"))
  ax = figures[-1].axes[0]
  x, y = ax.get_lines()
  np.testing.assert_array_equal(x.get_ydata(), y.get_ydata())
  assert x.get_markersize() > y.get_markersize() and _integer_ticks(ax.yaxis)
  assert "every value" not in ax.get_title()


def test_flat_note_reads_ragged_series():
  """Probe specs of different depths give ragged [spec][series][layer] values."""
  from mmneuron_jax.tasks.common.plots import flat_note
  assert flat_note([[[0.5, 0.5], [0.5]], [[0.5, 0.5, 0.5], [0.5, np.nan]]]) == \
      "\n(every value is 0.5: nothing to compare)"
  assert flat_note([[[0.5, 0.5], [0.25]], [[0.5, 0.5, 0.5], []]]) == ""
  assert flat_note([[], [[np.nan]]]) == "\n(no finite values)"


def test_signed_changes_never_print_minus_zero():
  from mmneuron_jax.tasks.common.tables import signed
  from mmneuron_jax.tasks.miner import report as miner_report
  assert [signed(x) for x in (-0.0, -1e-9, -0.0004, 0.0, 0.0123, -0.5)] == [
      "+0.000", "+0.000", "+0.000", "+0.000", "+0.012", "-0.500"]
  effects = [{"modality": "text", "benchmarks": ["text_mc"], "none": 0.25, "own": 0.25, "own_drop": 0.0,
              "all": 0.25, "all_drop": 0.0, "random": 0.25, "random_drop": 0.0}]
  table = "\n".join(miner_report.effects_section(effects))
  assert "(+0.000)" in table and "-0.000" not in table


def test_miner_deactivation_legend_is_beside_the_bars(figures, tmp_path):
  """One legend (every condition) outside the panels, so it never hides a bar of 1.0."""
  from mmneuron_jax.tasks.miner import report as miner_report
  rows = [{"dataset": d, "condition": c, "primary": 1.0, "changed_vs_none": 1.0}
          for d in ("image_qa", "video_qa") for c in ("none", "all", "image", "video", "text", "complement", "random")]
  miner_report.plot_deactivation(rows, str(tmp_path / "d.png"))
  (fig,) = figures
  legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
  assert len(legends) == 1 and [t.get_text() for t in legends[0].get_texts()] == [
      "none", "all", "image", "video", "text", "complement", "random"]
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  renderer = FigureCanvasAgg(fig).get_renderer()  # the layout as saved (tight_layout ran in finish)
  box = legends[0].get_window_extent(renderer)
  assert all(not box.overlaps(ax.get_window_extent(renderer)) for ax in fig.axes)
