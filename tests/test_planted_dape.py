"""Planted ground truth: vision neurons built to fire for one domain's images only are what the
statistics + DAPE pipeline selects (precision and recall >= 0.95); a random model's selection
does not match them."""

import numpy as np

import mmneuron_jax
from mmneuron_jax.io.accumulate import accumulate
from mmneuron_jax.analysis.stats import store_spec
from mmneuron_jax.data.inputs.llava_next import LlavaNextInputs
from mmneuron_jax.data.sources.records import VQARecord, load_image
from mmneuron_jax.data.synthetic import planted
from mmneuron_jax.data.synthetic.demo_llava_next import build_demo_checkpoint
from mmneuron_jax.io.stats_store import StatsStore
from mmneuron_jax.tasks.mmneuron import domain_stats, select_sets

HUES = ["red", "yellow", "green", "cyan", "blue"]
QUESTION = "what colour is it ?"
PER_DOMAIN = 3
LAYER = 1


class DapeCfg:
  filter_rate = 0.95
  bar_ratio = 0.95
  top_rate = None


def hue_records(n=6):
  rng = np.random.default_rng(1)
  return {h: [VQARecord(id=f"{h}-{i}", domain=h, question=QUESTION, answers=[h],
                        image_bytes=planted.hue_image(h, (int(rng.integers(20, 90)), int(rng.integers(20, 90))), i))
              for i in range(n)] for h in HUES}


def run_pipeline(path, workdir, check_prefetch=False):
  model = mmneuron_jax.load_hf(path)
  inputs = LlavaNextInputs.from_pretrained(path)
  recs = hue_records()
  sizes = {d: [load_image(r).size[::-1] for r in v] for d, v in recs.items()}
  batches, _ = domain_stats.plan(recs, sizes, model.config, 4, None, None)
  step = domain_stats.make_step_fn(model, model.params, inputs, recs, lambda r: f"<image>\n{r.question}",
                                   load_image, len(HUES), 4)
  store = StatsStore.open_or_create(workdir, store_spec(model.probe_modules, len(HUES)), "planted")
  totals = accumulate(store, ((i + 1, b) for i, b in enumerate(batches)), step.run, commit_every=3, progress=False,
                      prepare=step.prepare, prefetch=2)  # host preprocessing on a thread, as in stage_stats
  if check_prefetch:
    assert_same_as_sequential(totals, step, batches)
  layers, width = model.probe_modules["vision"]
  cfg = DapeCfg()
  cfg.top_rate = len(HUES) * PER_DOMAIN / (layers * width)  # the budget equals the planted count
  sets = select_sets(totals, model, "planted", HUES, cfg)
  return sets["vision"].mask, planted.planted_mask(len(HUES), layers, width, LAYER, PER_DOMAIN)


def assert_same_as_sequential(totals, step, batches):
  """The prefetched totals equal the plain loop's (each batch's partial sums added in order)."""
  want = {k: np.zeros_like(v) for k, v in totals.items()}
  for b in batches:
    want = {k: want[k] + np.asarray(v).astype(want[k].dtype) for k, v in step(b).items()}
  for k in want:
    np.testing.assert_array_equal(totals[k], want[k], err_msg=k)


def precision_recall(selected, truth):
  hit = (selected & truth).sum()
  return hit / max(selected.sum(), 1), hit / truth.sum()


def test_planted_neurons_are_recovered(tmp_path):
  path = build_demo_checkpoint(str(tmp_path / "planted"), [QUESTION],
                               edit_state=planted.edit_state_fn(HUES, layer=LAYER, per_domain=PER_DOMAIN))
  selected, truth = run_pipeline(path, str(tmp_path / "stats"))
  precision, recall = precision_recall(selected, truth)
  assert precision >= 0.95 and recall >= 0.95, (precision, recall)


def test_random_model_does_not_recover_them(tmp_path):
  path = build_demo_checkpoint(str(tmp_path / "random"), [QUESTION])
  selected, truth = run_pipeline(path, str(tmp_path / "stats"), check_prefetch=True)
  precision, recall = precision_recall(selected, truth)
  assert recall < 0.5 and precision < 0.5, (precision, recall)
