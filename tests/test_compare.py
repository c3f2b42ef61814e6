"""Cross-run neuron-set comparison (`analysis/compare.py`, `tasks/compare/`) against plain-numpy /
plain-Python references: depth histograms from a fine grid of points, Jaccard from Python sets."""
import csv
import json
import os

import numpy as np
import pytest

from mmneuron_jax.configs import compare_runs
from mmneuron_jax import tasks
from mmneuron_jax.analysis import compare
from mmneuron_jax.analysis.neuron_sets import NeuronSet


def random_mask(groups, layers, width, rate, seed):
  return np.random.default_rng(seed).random((groups, layers, width)) < rate


def depth_reference(mask, bins):
  """Each layer's neurons spread over `bins` evenly spaced points of its depth interval; count the
  points falling in each bin (the grid has L * bins points, so every point lies inside one bin)."""
  G, L, _ = mask.shape
  out = np.zeros((G, bins))
  for g in range(G):
    for l in range(L):
      n = mask[g, l].sum()
      for p in range(bins):
        depth = (l + (p + 0.5) / bins) / L
        out[g, int(depth * bins)] += n / bins
  total = out.sum(1, keepdims=True)
  return np.where(total > 0, out / np.where(total > 0, total, 1), 0)


@pytest.mark.parametrize("layers,bins", [(28, 10), (3, 10), (32, 7), (1, 4)])
def test_depth_histogram_matches_reference(layers, bins):
  mask = random_mask(3, layers, 40, 0.1, seed=layers)
  mask[2] = False  # an empty group stays zeros
  np.testing.assert_allclose(compare.depth_histogram(mask, bins), depth_reference(mask, bins), atol=1e-12)
  np.testing.assert_allclose(compare.depth_weights(layers, bins).sum(1), 1.0)


def test_flat_set_gives_flat_histogram():
  mask = np.ones((1, 28, 5), bool)
  np.testing.assert_allclose(compare.depth_histogram(mask, 10), np.full((1, 10), 0.1))


def test_jaccard_matches_python_sets():
  a, b = random_mask(3, 4, 50, 0.2, 1), random_mask(2, 4, 50, 0.3, 2)
  sets = lambda m: {(l, j) for l, j in zip(*np.nonzero(m))}
  want = [[len(sets(x) & sets(y)) / len(sets(x) | sets(y)) for y in b] for x in a]
  np.testing.assert_allclose(compare.cross_jaccard(a, b), want)
  per_layer = compare.cross_jaccard(a, b, per_layer=True)
  for i in range(3):
    for j in range(2):
      for l in range(4):
        x, y = set(np.flatnonzero(a[i, l])), set(np.flatnonzero(b[j, l]))
        assert per_layer[i, j, l] == pytest.approx(len(x & y) / len(x | y) if x | y else 0.0)
        assert compare.jaccard_per_layer(a[i], b[j])[l] == pytest.approx(per_layer[i, j, l])
  assert compare.jaccard(a[0], a[0]) == 1.0 and compare.jaccard(np.zeros(3, bool), np.zeros(3, bool)) == 0.0
  np.testing.assert_allclose(np.diag(compare.pairwise_jaccard(a)), 1.0)
  with pytest.raises(ValueError, match="same"):
    compare.cross_jaccard(a, random_mask(1, 5, 50, 0.2, 3))


def write_run(root, name, groups, layers, width, method, seed, model="m"):
  mask = random_mask(len(groups), layers, width, 0.05, seed)
  s = NeuronSet(model_id=model, module="llm", group_names=groups, layers=layers, width=width, mask=mask,
                meta={"method": method})
  os.makedirs(os.path.join(root, name, "neurons"))
  s.save(os.path.join(root, name, "neurons", "llm.json"))
  return os.path.join(root, name), s


def test_compare_task_report(tmp_path):
  miner_run, miner_set = write_run(tmp_path, "miner", ["text", "image"], 6, 64, "miner", 1)
  dape_run, dape_set = write_run(tmp_path, "dape", ["medical", "documents", "driving"], 6, 64, "dape", 2)
  other_run, _ = write_run(tmp_path, "other", ["text", "audio"], 9, 32, "miner", 3, model="m2")
  same_shape_run, _ = write_run(tmp_path, "same_shape", ["text", "audio"], 6, 64, "miner", 4, model="m3")
  config = compare_runs.get_config()
  config.compare.runs = (miner_run, dape_run, other_run, same_shape_run)
  config.compare.bins = 5
  report = tasks.run(config, str(tmp_path / "out"))
  text = open(report).read()
  assert "Distribution by relative depth" in text and "Overlap between sets of the same model family and module" in text
  result = json.load(open(tmp_path / "out" / "compare.json"))
  assert [r["layers"] for r in result["runs"]] == [6, 6, 9, 6]
  assert len(result["cross"]) == 1  # only the two sets of model m can be overlapped neuron by neuron
  np.testing.assert_allclose(result["cross"][0]["jaccard"], compare.cross_jaccard(miner_set.mask, dape_set.mask))
  np.testing.assert_allclose(result["runs"][1]["depth_histogram"], depth_reference(dape_set.mask, 5), atol=1e-12)
  # the tables also as CSV beside compare.json, with its numbers exactly
  depth = list(csv.DictReader(open(tmp_path / "out" / "compare.depth.csv")))
  assert [[float(d[f"bin_{k}"]) for k in range(5)] for d in depth if d["run"] == result["runs"][1]["label"]] == \
      result["runs"][1]["depth_histogram"]
  cross = list(csv.DictReader(open(tmp_path / "out" / "compare.cross.csv")))
  assert [float(c["jaccard"]) for c in cross] == [v for row in result["cross"][0]["jaccard"] for v in row]
  runs = list(csv.DictReader(open(tmp_path / "out" / "compare.runs.csv")))
  assert [int(r["sizes.image"] or 0) for r in runs] == [r["sizes"].get("image", 0) for r in result["runs"]]
  for name in os.listdir(tmp_path / "out" / "plots"):
    assert open(tmp_path / "out" / "plots" / name, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
  config.compare.runs = (str(tmp_path / "missing"),)
  with pytest.raises(FileNotFoundError, match="neurons/llm.json"):
    tasks.run(config, str(tmp_path / "out2"))


SIX = ["llava_next", "instructblip", "qwen2_vl", "qwen2_audio", "qwen2_5_vl", "llava_onevision"]


def test_six_families_side_by_side(tmp_path):
  """Runs of six families (the family read from each run's checkpoint config.json, nothing per family
  in the task): a row each with its mean relative depth, deactivation deltas of MMNeuron rows (with
  controls) and MINER rows (datasets) against plain-Python means, and an overlap only between the two
  runs of one family and shape (an MMNeuron and a MINER run of one qwen2_5_vl checkpoint)."""
  runs, sets = [], []
  for i, family in enumerate(SIX + ["qwen2_5_vl"]):
    layers, width = (6, 64) if family == "qwen2_5_vl" else (4 + i, 32)
    miner = i % 2 == 1 or i == len(SIX)
    groups = ["text", "image"] if miner else ["medical", "documents"]
    run, s = write_run(tmp_path, f"run{i}", groups, layers, width, "miner" if miner else "dape", i, model=family)
    os.makedirs(os.path.join(run, "demo_checkpoint"))
    with open(os.path.join(run, "demo_checkpoint", "config.json"), "w") as f:
      json.dump({"model_type": family}, f)
    with open(os.path.join(run, "config.json"), "w") as f:
      json.dump({"model": {"path": "", "id": family}}, f)
    if miner:
      rows = [{"dataset": d, "condition": c, "primary": v} for d, base in (("a", 0.5), ("b", 0.75))
              for c, v in (("none", base), ("image", base - 0.25 - i / 100), ("random", base - 0.05))]
    else:
      rows = [{"domain": g, "condition": c, "control": k, "primary": v} for g, base in (("medical", 1.0), ("documents", 2.0))
              for c, k, v in (("none", "dape", base), ("medical", "dape", base - 0.5), ("medical", "random", base - 0.1))]
    with open(os.path.join(run, "deactivation.json"), "w") as f:
      json.dump({"rows": rows}, f)
    runs.append(run)
    sets.append(s)
  config = compare_runs.get_config()
  config.compare.runs = tuple(runs)
  report = open(tasks.run(config, str(tmp_path / "out"))).read()
  result = json.load(open(tmp_path / "out" / "compare.json"))
  assert [r["family"] for r in result["runs"]] == SIX + ["qwen2_5_vl"]
  for family in SIX:
    assert f"| {family} |" in report
  for r, s in zip(result["runs"], sets):
    layer_of = [np.repeat(np.arange(s.layers), s.mask[g].sum(-1)) for g in range(len(s.group_names))]
    np.testing.assert_allclose(r["mean_depth"], [np.mean((l + 0.5) / s.layers) for l in layer_of])
  miner_deltas = {d["condition"]: d["delta"] for d in result["runs"][1]["deactivation_deltas"]}
  assert miner_deltas == pytest.approx({"image": -0.26, "random": -0.05})
  dape = {(d["condition"], d["control"]): d["delta"] for d in result["runs"][0]["deactivation_deltas"]}
  assert dape == pytest.approx({("medical", "dape"): -0.5, ("medical", "random"): -0.1})
  assert "Deactivation: change of the primary metric" in report and "-0.260" in report
  assert [(c["a"], c["b"]) for c in result["cross"]] == [(result["runs"][4]["label"], result["runs"][6]["label"])]
  assert result["cross"][0]["same_checkpoint"]
  np.testing.assert_allclose(result["cross"][0]["jaccard"], compare.cross_jaccard(sets[4].mask, sets[6].mask))
  rows = list(csv.DictReader(open(tmp_path / "out" / "compare.deactivation.csv")))
  assert {(r["family"], r["condition"], r["control"], float(r["delta"])) for r in rows if r["run"] == result["runs"][0]["label"]} == \
      {("llava_next", "medical", "dape", -0.5), ("llava_next", "medical", "random", dape[("medical", "random")])}
  assert [r["family"] for r in csv.DictReader(open(tmp_path / "out" / "compare.runs.csv"))] == SIX + ["qwen2_5_vl"]
