"""In-scan statistics equal plain numpy over captured activations; padding never counts."""
import numpy as np
import pytest

import hf_tiny
import mmneuron_jax
from mmneuron_jax.analysis import stats
from mmneuron_jax.data.inputs.batching import pad_batch


@pytest.fixture(scope="module")
def model(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("llava"))
  hf_tiny.build_llava_next(path)
  return mmneuron_jax.load_hf(path)


def numpy_stats(captured, groups, num_groups):
  out = {}
  for m, acts in captured.items():
    g = groups[m]
    out[m] = {
        "count": np.stack([[(acts[layer][g == k] > 0).sum(0) for k in range(num_groups)] for layer in range(len(acts))]),
        "sum": np.stack([[acts[layer][g == k].astype(np.float64).sum(0) for k in range(num_groups)]
                         for layer in range(len(acts))]),
        "tokens": np.array([(g == k).sum() for k in range(num_groups)]),
    }
  return out


@pytest.mark.parametrize("image_only", [False, True])
def test_stats_step_matches_numpy(model, image_only):
  batch = hf_tiny.llava_next_batch(hf_tiny.llava_next_config(), [(40, 90), (60, 50), (33, 33)], [5, 9, 2])
  batch = pad_batch(batch, 4, 32, 6)  # an empty row, padded positions and padded tile slots
  sample_groups = np.array([2, 0, 2, -1])
  groups = model.token_groups(batch, sample_groups, media_only=image_only)
  got = stats.make_step(model, 3)(model.params, model.device_batch(batch), stats.to_device_groups(groups))
  cap = model.apply(model.params, batch, capture=tuple(model.probe_modules))
  ref = numpy_stats({m: np.asarray(v) for m, v in cap.aux.items()}, groups, 3)
  prepared = model.prepare(batch)
  assert not prepared["tile_valid"].all()
  for m in model.probe_modules:
    np.testing.assert_array_equal(np.asarray(got[m]["count"]), ref[m]["count"], err_msg=m)
    np.testing.assert_allclose(np.asarray(got[m]["sum"]), ref[m]["sum"], atol=1e-3, err_msg=m)
    np.testing.assert_array_equal(np.asarray(got[m]["tokens"]), ref[m]["tokens"], err_msg=m)
  # Padding never counts: LLM tokens counted = valid tokens of counted rows (image tokens only if asked).
  am = prepared["attention_mask"].astype(bool)
  if image_only:
    am &= prepared["feature_index"] >= 0
  assert ref["llm"]["tokens"].sum() == am[:3].sum()
  side = 28 // 7
  assert ref["vision"]["tokens"].sum() == prepared["tile_valid"].sum() * (side * side + 1)


def test_padding_does_not_change_stats(model):
  cfg = hf_tiny.llava_next_config()
  batch = hf_tiny.llava_next_batch(cfg, [(40, 90)], [5])
  step = stats.make_step(model, 1)

  def run(b):
    g = model.token_groups(b, np.array([0] + [-1] * (b["input_ids"].shape[0] - 1)))
    return step(model.params, model.device_batch(b), stats.to_device_groups(g))

  a, b = run(batch), run(pad_batch(batch, 3, 64, 6))
  for m in model.probe_modules:
    np.testing.assert_array_equal(np.asarray(a[m]["count"]), np.asarray(b[m]["count"]))
    np.testing.assert_allclose(np.asarray(a[m]["sum"]), np.asarray(b[m]["sum"]), rtol=1e-5, atol=1e-4)
