"""NeuronSet: JSON and PyTorch round trips, multiplicative masks, random controls, the plot."""
import json
import sys

import numpy as np
import pytest

from mmneuron_jax.analysis.neuron_sets import NeuronSet
from mmneuron_jax.tasks.common.plots import plot_layer_distribution

NAMES = ["auto_driving", "medical", "remote_sensing"]


def make_set(seed=0, groups=NAMES, layers=4, width=50, module="llm"):
  rng = np.random.default_rng(seed)
  mask = rng.random((len(groups), layers, width)) < 0.1
  mask[0, min(2, layers - 1)] = False  # an empty layer
  mask[-1] = False  # a group with no neurons
  mask[1, :, 7] = mask[0, :, 7] = True  # overlap between groups
  return NeuronSet(model_id="llava-hf/llava-v1.6-vicuna-7b-hf", module=module, group_names=list(groups),
                   layers=layers, width=width, mask=mask,
                   meta={"method": "dape", "top_rate": np.float32(0.25), "n_tokens": np.array([10, 20, 30]),
                         "note": "ünïcode"})


def assert_same(a: NeuronSet, b: NeuronSet):
  assert (a.model_id, a.module, a.group_names, a.layers, a.width) == (b.model_id, b.module, b.group_names,
                                                                     b.layers, b.width)
  assert a.mask.dtype == b.mask.dtype == bool
  np.testing.assert_array_equal(a.mask, b.mask)


def test_json_roundtrip_is_exact_and_readable(tmp_path):
  s = make_set()
  path = str(tmp_path / "llm.json")
  assert s.save(path) == path
  t = NeuronSet.load(path)
  assert_same(s, t)
  assert t.meta == {"method": "dape", "top_rate": 0.25, "n_tokens": [10, 20, 30], "note": "ünïcode"}
  raw = json.load(open(path, encoding="utf-8"))
  assert raw["format"] == "mmneuron_jax.neuron_set" and raw["group_names"] == NAMES
  assert raw["sizes"] == {n: int(s.mask[i].sum()) for i, n in enumerate(NAMES)}
  for g, name in enumerate(NAMES):
    assert raw["groups"][name] == [np.flatnonzero(s.mask[g, l]).tolist() for l in range(4)]
  text = open(path, encoding="utf-8").read()
  assert "ünïcode" in text
  assert text.count("\n") < 60  # one line per (group, layer), not one per index
  t.save(str(tmp_path / "again.json"))
  assert open(str(tmp_path / "again.json"), encoding="utf-8").read() == text


def test_load_rejects_bad_files(tmp_path):
  good = json.loads(make_set().to_json())
  cases = {
      "format": dict(good, format="something"),
      "out of range": dict(good, groups=dict(good["groups"], medical=[[50], [], [], []])),
      "duplicate": dict(good, groups=dict(good["groups"], medical=[[3, 3], [], [], []])),
      "layer lists": dict(good, groups=dict(good["groups"], medical=[[1]])),
      "differ from group_names": dict(good, group_names=NAMES[:2]),
  }
  for message, d in cases.items():
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=message):
      NeuronSet.load(str(path))
  (tmp_path / "junk.json").write_text("not json")
  with pytest.raises(ValueError, match="junk.json"):
    NeuronSet.load(str(tmp_path / "junk.json"))


def test_mask_shape_is_checked():
  with pytest.raises(ValueError, match="mask shape"):
    NeuronSet("m", "llm", NAMES, 4, 50, np.zeros((3, 4, 49), bool))
  with pytest.raises(ValueError, match="bool"):
    NeuronSet("m", "llm", NAMES, 4, 50, np.zeros((3, 4, 50)))
  with pytest.raises(ValueError, match="unique"):
    NeuronSet("m", "llm", ["a", "a", "b"], 4, 50, np.zeros((3, 4, 50), bool))


def test_torch_export_roundtrip(tmp_path):
  torch = pytest.importorskip("torch")
  s = make_set(1)
  path = str(tmp_path / "llm.pt")
  s.export_torch(path)
  raw = torch.load(path, weights_only=True)
  assert isinstance(raw, list) and len(raw) == 3 and all(len(g) == 4 for g in raw)
  for g in range(3):
    for l in range(4):
      t = raw[g][l]
      assert isinstance(t, torch.Tensor) and t.dtype == torch.long and t.ndim == 1
      assert t.tolist() == np.flatnonzero(s.mask[g, l]).tolist()  # sorted, like the authors' files
  back = NeuronSet.from_torch(path, model_id=s.model_id, module=s.module, width=s.width, group_names=NAMES,
                              layers=4)
  assert_same(s, back)


def test_from_torch_reads_the_authors_layout(tmp_path):
  torch = pytest.importorskip("torch")
  data = [[torch.tensor([1, 5]).long(), torch.tensor([]).long()], [torch.tensor([]).long(), torch.tensor([0]).long()]]
  path = str(tmp_path / "llava-mmproj")
  torch.save(data, path)
  s = NeuronSet.from_torch(path, model_id="m", module="projector", width=8)
  assert s.group_names == ["group0", "group1"] and s.layers == 2
  assert [s.indices(g) for g in range(2)] == [[[1, 5], []], [[], [0]]]
  with pytest.raises(ValueError, match="group_names"):
    NeuronSet.from_torch(path, model_id="m", module="projector", width=8, group_names=["a", "b", "c"])
  with pytest.raises(ValueError, match="out of range"):
    NeuronSet.from_torch(path, model_id="m", module="projector", width=4)
  with pytest.raises(ValueError, match="layers"):
    NeuronSet.from_torch(path, model_id="m", module="projector", width=8, layers=3)


def test_missing_torch_gives_clear_error(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
  with pytest.raises(ImportError, match="PyTorch"):
    make_set().export_torch(str(tmp_path / "x.pt"))
  with pytest.raises(ImportError, match="PyTorch"):
    NeuronSet.from_torch(str(tmp_path / "x.pt"), model_id="m", module="llm", width=50)


def test_to_masks_zeroes_exactly_the_chosen_groups():
  s = make_set(2)
  cases = [(["medical"], [1]), (["auto_driving", "medical"], [0, 1]), ([0, 2], [0, 2]), (None, [0, 1, 2]),
           ("auto_driving", [0])]
  for groups, rows in cases:
    m = s.to_masks(groups=groups)
    assert m.dtype == np.float32 and m.shape == (4, 50)
    off = s.mask[rows].any(axis=0)
    np.testing.assert_array_equal(m, np.where(off, 0.0, 1.0).astype(np.float32))
  np.testing.assert_array_equal(s.to_masks(["remote_sensing"]), np.ones((4, 50), np.float32))  # empty group
  half = s.to_masks(["medical"], value=0.5)
  assert set(np.unique(half)) == {0.5, 1.0} and (half == 0.5).sum() == s.mask[1].sum()
  with pytest.raises(ValueError, match="unknown group"):
    s.to_masks(["documents"])


def test_random_like_keeps_per_layer_sizes():
  s = make_set(3)
  r = s.random_like(seed=7)
  np.testing.assert_array_equal(r.mask.sum(axis=2), s.mask.sum(axis=2))
  np.testing.assert_array_equal(s.random_like(seed=7).mask, r.mask)  # deterministic
  assert not np.array_equal(s.random_like(seed=8).mask, r.mask)
  assert not np.array_equal(r.mask, s.mask)
  assert r.meta["control"] == "random" and r.meta["seed"] == 7 and "control" not in s.meta
  assert (r.model_id, r.module, r.group_names, r.layers, r.width) == (s.model_id, s.module, s.group_names, 4, 50)


def test_plot_layer_distribution(tmp_path):
  sets = [make_set(4), make_set(5, layers=1, width=30, module="projector")]
  path = str(tmp_path / "layers.png")
  fig = plot_layer_distribution(sets, path)  # the Figure (a notebook shows it), the PNG written
  from matplotlib.figure import Figure
  assert isinstance(fig, Figure) and len(fig.axes) == 2 and fig._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"
  assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
  assert len(plot_layer_distribution(sets).axes) == 2  # no path: nothing written
  with pytest.raises(ValueError):
    plot_layer_distribution([], path)
