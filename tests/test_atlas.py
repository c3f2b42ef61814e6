"""Neuron atlas: the in-scan top-k probe against numpy, the resumable merge loop, and the planted
model's atlas showing the ground truth (planted vision neurons fire on their own hue only; planted
LLM neurons peak on their hue and switching them off hurts that hue's answer most)."""
import glob
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from mmneuron_jax.io.accumulate import Step
from mmneuron_jax.io.stats_store import StatsStore
from mmneuron_jax.nn.topk_probe import TopKProbe
from mmneuron_jax.tasks.atlas import collect, site

HUES = ["red", "yellow", "green", "cyan", "blue"]


def numpy_topk(a, groups, sample, position, cols, edges, G, k):
  """Plain reproduction: per group and column, each sample's best token (first on ties), samples
  sorted by that value (descending, lower sample first on ties)."""
  a = a.reshape(-1, a.shape[-1])[:, cols]
  groups, sample, position = groups.ravel(), sample.ravel(), position.ravel()
  value = np.full((G, len(cols), k), -np.inf)
  key = np.full((G, len(cols), k), -1)
  above = np.zeros((G, len(cols), len(edges)), np.int64)
  for g in range(G):
    rows = np.flatnonzero(groups == g)
    for c in range(len(cols)):
      best = []
      for s in np.unique(sample[rows]):
        mine = rows[sample[rows] == s]
        t = mine[np.argmax(a[mine, c])]
        best.append((-a[t, c], s, position[t]))
      for i, (v, s, p) in enumerate(sorted(best)[:k]):
        value[g, c, i], key[g, c, i] = -v, s * 1000 + p
      above[g, c] = [(a[rows, c] > e).sum() for e in edges]
  return value, key, above


def test_topk_probe_matches_numpy():
  rng = np.random.default_rng(0)
  B, T, F, G, k = 5, 7, 11, 2, 3
  acts = rng.standard_normal((B, T, F)).astype(np.float32)
  groups = rng.integers(-1, G, (B, T)).astype(np.int32)
  groups[4] = -1  # a padding row
  groups[3] = 1
  sample = np.repeat(np.array([10, 11, 12, 13, -1])[:, None], T, 1).astype(np.int32)
  row = np.repeat(np.array([0, 1, 2, 3, -1])[:, None], T, 1).astype(np.int32)
  position = np.repeat(np.arange(T)[None], B, 0).astype(np.int32)
  cols = np.array([0, 3, 10], np.int32)
  edges = np.array(collect.EDGES, np.float32)
  out = TopKProbe(jnp.asarray(groups), jnp.asarray(sample), jnp.asarray(position), jnp.asarray(row), jnp.asarray(cols),
                  jnp.asarray(edges), G, k, B)(jnp.asarray(acts))
  value, key, above = numpy_topk(acts, groups, sample, position, cols, edges, G, k)
  np.testing.assert_allclose(np.asarray(out["value"]), value, rtol=0, atol=0)  # float32 copies, exact
  got_key = np.where(np.asarray(out["sample"]) >= 0, np.asarray(out["sample"]) * 1000 + np.asarray(out["position"]), -1)
  np.testing.assert_array_equal(got_key, key)
  np.testing.assert_array_equal(np.asarray(out["above"]), above)
  np.testing.assert_array_equal(np.asarray(out["tokens"]), [(groups == g).sum() for g in range(G)])


def fake_step(S=5, G=2, k=3, E=len(collect.EDGES), fail_at=None):
  """A Step whose partials are a deterministic function of the batch (sample ids)."""
  def run(ids):
    if fail_at is not None and ids[0] == fail_at:
      raise KeyboardInterrupt("killed")
    rng = np.random.default_rng(list(ids))
    value = np.round(rng.standard_normal((S, G, k)), 1)  # rounded: ties, broken by sample / position
    value = -np.sort(-value, -1)
    return {"value/m": value, "sample/m": np.full((S, G, k), ids[0]), "position/m": np.tile(np.arange(k), (S, G, 1)),
            "above/m": rng.integers(0, 5, (S, G, E)), "tokens/m": rng.integers(0, 9, G)}
  return Step(prepare=lambda ids: ids, run=run)


def test_merge_loop_resumes_to_identical_totals(tmp_path):
  spec = {"value/m": ((5, 2, 3), "float64"), "sample/m": ((5, 2, 3), "int64"), "position/m": ((5, 2, 3), "int64"),
          "above/m": ((5, 2, len(collect.EDGES)), "int64"), "tokens/m": ((2,), "int64")}
  batches = [(i + 1, (i,)) for i in range(7)]
  clean = collect.collect(StatsStore.open_or_create(str(tmp_path / "clean"), spec, "f"), batches, fake_step(),
                          commit_every=2, prefetch=0)
  with pytest.raises(KeyboardInterrupt):
    collect.collect(StatsStore.open_or_create(str(tmp_path / "killed"), spec, "f"), batches, fake_step(fail_at=5),
                    commit_every=2, prefetch=1)
  store = StatsStore.open_or_create(str(tmp_path / "killed"), spec, "f")
  assert store.cursor == 5  # the batches before the failure were committed
  resumed = collect.collect(store, batches, fake_step(fail_at=0), commit_every=2, prefetch=0)  # batch 0 not re-run
  for name in spec:
    np.testing.assert_array_equal(resumed[name], clean[name], err_msg=name)
  # Independent reproduction of the top-k: all partials pooled, sorted by (-value, sample, position).
  parts = [fake_step().run(b) for _, b in batches]
  for s in range(5):
    for g in range(2):
      pool = sorted((-p["value/m"][s, g, r], p["sample/m"][s, g, r], r) for p in parts for r in range(3))[:3]
      assert [(-v, smp, pos) for v, smp, pos in pool] == list(zip(clean["value/m"][s, g], clean["sample/m"][s, g],
                                                                  clean["position/m"][s, g]))
  np.testing.assert_array_equal(clean["above/m"], sum(p["above/m"] for p in parts))


@pytest.fixture(scope="module")
def planted_atlas(tmp_path_factory):
  import mmneuron_jax
  from mmneuron_jax.analysis.neuron_sets import NeuronSet
  from mmneuron_jax.data.synthetic import planted, planted_llm
  from mmneuron_jax.data.inputs.llava_next import LlavaNextInputs
  from mmneuron_jax.data.sources.records import load_image
  from mmneuron_jax.tasks import atlas
  from mmneuron_jax.tasks.atlas.build import Options
  root = tmp_path_factory.mktemp("planted_atlas")
  path = planted_llm.build(str(root / "ckpt"), HUES, llm_layer=2, per_domain=3, vision_layer=1)
  model, inputs = mmneuron_jax.load_hf(path), LlavaNextInputs.from_pretrained(path)
  records = planted_llm.hue_records(HUES, 5)
  by_hue = {h: [r for r in records if r.domain == h] for h in HUES}
  sets = {}
  for module, mask_fn, layer in (("vision", planted.planted_mask, 1), ("llm", planted_llm.planted_mask, 2)):
    L, F = model.probe_modules[module]
    sets[module] = NeuronSet("planted", module, HUES, L, F, mask_fn(len(HUES), L, F, layer, 3))
  index = atlas.make_atlas(model, model.params, inputs, str(root / "run"), sets, HUES, {h: v[:4] for h, v in by_hue.items()},
                           lambda r: f"<image>\n{r.question}", load_image, Options(k=4, batch_size=4), "planted",
                           heldout_by_group={h: v[4:] for h, v in by_hue.items()})
  return os.path.dirname(index), sets


def pages(atlas_dir, module):
  return [site.read_page_data(p) for p in sorted(glob.glob(os.path.join(atlas_dir, "n", f"{module}_*.html")))]


def test_planted_vision_neurons_fire_on_their_own_hue_only(planted_atlas):
  atlas_dir, sets = planted_atlas
  vision = pages(atlas_dir, "vision")
  assert len(vision) == len(HUES) * 3
  edges = collect.EDGES
  for p in vision:
    (own,) = p["member"]
    g = HUES.index(own)
    assert p["max"][g] > 1.0, p["id"]
    assert max(v for h, v in enumerate(p["max"]) if h != g) < 0.05, (p["id"], p["max"])
    # histogram: no token of another hue above 0.05
    first = edges.index(0.05) + 1
    assert all(sum(p["hist"]["counts"][h][first:]) == 0 for h in range(len(HUES)) if h != g), p["id"]
    assert sum(p["hist"]["counts"][g][first:]) > 0
    examples = p["top"][str(g)]
    assert len(examples) == 4 and all(e["record"].startswith(own + "-") for e in examples)
    assert len({e["record"] for e in examples}) == 4  # one example per sample
    assert all(t["heat"].startswith("data:image/png;base64,") for e in examples for t in e["tiles"])
    for e in examples:  # the tiles exist on disk
      assert all(os.path.exists(os.path.join(atlas_dir, "n", t["src"])) for t in e["tiles"])


def test_planted_llm_neurons_peak_on_their_hue_and_matter_for_it(planted_atlas):
  atlas_dir, _ = planted_atlas
  llm = pages(atlas_dir, "llm")
  assert len(llm) == len(HUES) * 3
  for p in llm:
    (own,) = p["member"]
    g = HUES.index(own)
    assert int(np.argmax(p["max"])) == g, (p["id"], p["max"])
    assert int(np.argmax(p["effect"])) == g and p["effect"][g] > 0, (p["id"], p["effect"])
    assert p["lens"][0][0] == own  # its output direction writes its hue's answer
  index = json.load(open(os.path.join(atlas_dir, "index.json")))
  assert index["total"] == 30 and index["counts"]["llm"]["2"] == [3] * 5


def test_notebook_html_is_self_contained(planted_atlas):
  from mmneuron_jax.tasks import atlas
  atlas_dir, _ = planted_atlas
  text = atlas.neuron_html(atlas_dir, "vision.L1.N2" if os.path.exists(os.path.join(atlas_dir, "n", "vision_L1_N2.html"))
                           else pages(atlas_dir, "vision")[0]["id"])
  assert "../img/" not in text and "data:image/png;base64," in text and "<style>" in text
  with pytest.raises(KeyError):
    atlas.neuron_html(atlas_dir, "vision.L9.N999")
