"""Sharded steps equal single-device ones: 8 fake CPU devices, meshes 2x4 (data x tensor),
2x4 (fsdp x tensor) and 8x1 (data), on a tiny LLaVA-NeXT: statistics, masked logits and the logit
lens through `load_on_mesh` (2x4, 8x1) or `load_hf(shardings=)` + `Model.on_mesh` (fsdp x
tensor), then `analysis.stats.make_step` / `model.apply` (one jit path: `sharding.jit_step`).

The 8-device part runs in a subprocess (XLA_FLAGS=--xla_force_host_platform_device_count=8,
JAX_PLATFORMS=cpu) so this pytest process keeps its single CPU device. Tolerances (fp32, only
the reduction order differs): counts and token counts exact; sums atol 1e-4; masked logits
atol 1e-5; lens entropies atol 5e-5 nats (~1e-5 relative) and identical top-1 tokens.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

MESHES = {"data2_tensor4": dict(data=2, fsdp=1, tensor=4), "fsdp2_tensor4": dict(data=1, fsdp=2, tensor=4),
          "data8": dict(data=8, fsdp=1, tensor=1)}
SAMPLE_GROUPS = [2, 0, 2, 1, 0, 1, -1, -1]
NUM_GROUPS = 3


def _batch():
  import hf_tiny
  from mmneuron_jax.data.inputs.batching import pad_batch
  cfg = hf_tiny.llava_next_config()
  batch = hf_tiny.llava_next_batch(cfg, [(40, 90), (60, 50), (33, 33), (50, 50), (56, 30), (28, 28)],
                                   [5, 9, 2, 7, 3, 6])
  return pad_batch(batch, 8, 32, 3)  # 8 rows (2 empty), 40 tile slots (some padded)


def _masks(model):
  rng = np.random.default_rng(0)
  return {m: (rng.random(shape) > 0.3).astype(np.float32) for m, shape in model.probe_modules.items()}


def _spec(spec) -> list:
  """PartitionSpec -> JSON-able list (its str differs across jax versions)."""
  return [list(a) if isinstance(a, tuple) else a for a in spec]


def run_worker(model_dir: str, batch_file: str, out_file: str):
  """In the 8-device subprocess: single-device reference vs every mesh -> JSON of max diffs."""
  import jax
  import mmneuron_jax
  from mmneuron_jax import sharding as S
  from mmneuron_jax.analysis import stats
  from mmneuron_jax.analysis.logit_lens import Lens, positions_where
  from mmneuron_jax.api import read_config
  from mmneuron_jax.loading import shardings_for_config

  assert jax.device_count() == 8, jax.devices()
  batch = dict(np.load(batch_file))
  ref = mmneuron_jax.load_hf(model_dir)
  groups = ref.token_groups(batch, np.array(SAMPLE_GROUPS))
  masks = _masks(ref)
  lens = Lens(positions_where(batch["input_ids"] == ref.config["image_token_index"]), None, 5)
  want_stats = stats.make_step(ref, NUM_GROUPS)(ref.params, ref.device_batch(batch), stats.to_device_groups(groups))
  want = ref.apply(ref.params, batch, masks=masks, lens=lens)
  report = {}
  for name, sizes in MESHES.items():
    mesh = S.make_mesh(**sizes)
    if name == "fsdp2_tensor4":  # the explicit route; the others through load_on_mesh
      model = mmneuron_jax.load_hf(model_dir, shardings=shardings_for_config(read_config(model_dir), mesh))
      model = model.on_mesh(mesh)
    else:
      model = mmneuron_jax.load_on_mesh(model_dir, mesh)
    got_stats = stats.make_step(model, NUM_GROUPS)(model.params, model.host_batch(batch), groups)
    got = model.apply(model.params, batch, masks=masks, lens=lens)
    r = {"param_specs": {p: _spec(s) for p, _, s in S.describe(model.params, mesh)
                         if p in ("llm/layers/mlp/gate/kernel", "llm/embed_tokens", "vision/layers/mlp/fc1/kernel")},
         "gate_shard_shape": list(model.params["llm"]["layers"]["mlp"]["gate"]["kernel"].addressable_shards[0]
                                  .data.shape),
         "logits_sharding": _spec(got.logits.sharding.spec),
         "stats_sharding": _spec(got_stats["llm"]["count"].sharding.spec)}
    for m in want_stats:
      for field in ("count", "tokens"):
        r[f"{field}/{m}"] = int(np.abs(np.asarray(want_stats[m][field], np.int64)
                                       - np.asarray(got_stats[m][field], np.int64)).max())
      for field in ("sum", "sumsq"):
        r[f"{field}/{m}"] = float(np.abs(np.asarray(want_stats[m][field]) - np.asarray(got_stats[m][field])).max())
    r["logits"] = float(np.abs(np.asarray(want.logits) - np.asarray(got.logits)).max())
    valid = np.asarray(lens.positions) >= 0
    r["entropy"] = float(np.abs(np.asarray(want.lens["entropy"]) - np.asarray(got.lens["entropy"]))[:, valid].max())
    r["top1"] = int((np.asarray(want.lens["top_ids"])[..., 0] != np.asarray(got.lens["top_ids"])[..., 0])[:, valid]
                    .sum())
    report[name] = r
  with open(out_file, "w") as f:
    json.dump(report, f, indent=1)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  import hf_tiny
  path = str(tmp_path_factory.mktemp("llava"))
  hf_tiny.build_llava_next(path)
  return path


def test_eight_device_meshes_equal_single_device(model_dir, tmp_path):
  batch_file, out_file = str(tmp_path / "batch.npz"), str(tmp_path / "report.json")
  np.savez(batch_file, **{k: np.asarray(v) for k, v in _batch().items()})
  # Cheaper XLA CPU codegen (compile time dominates here); reference and meshes share the flags.
  flags = ("--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0 "
           "--xla_llvm_disable_expensive_passes=true")
  env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, os.path.abspath(__file__), model_dir, batch_file, out_file], env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
  with open(out_file) as f:
    report = json.load(f)
  assert sorted(report) == sorted(MESHES)
  for name, r in report.items():
    for key, value in r.items():
      if key.startswith(("count/", "tokens/")):
        assert value == 0, (name, key, value)
      elif key.startswith(("sum/", "sumsq/")):
        assert value <= 1e-4, (name, key, value)
    assert r["logits"] <= 1e-5, (name, r["logits"])
    assert r["entropy"] <= 5e-5, (name, r["entropy"])
    assert r["top1"] == 0, name
    assert r["stats_sharding"] == [], name  # probe results come back replicated
  # The params really are split: MLP width [L, D, F=88] over tensor=4 (and D over fsdp=2).
  assert report["data2_tensor4"]["gate_shard_shape"] == [3, 64, 22]
  assert report["fsdp2_tensor4"]["gate_shard_shape"] == [3, 32, 22]
  assert report["data8"]["gate_shard_shape"] == [3, 64, 88]
  assert report["data2_tensor4"]["logits_sharding"] == ["data"]
  assert report["fsdp2_tensor4"]["logits_sharding"] == ["fsdp"]
  assert report["data8"]["logits_sharding"] == ["data"]


def test_rules_fall_back_to_replicated():
  import jax
  from mmneuron_jax import sharding as S
  mesh = S.make_mesh()  # this process: one CPU device -> a 1x1x1 mesh
  assert dict(mesh.shape) == {"data": 1, "fsdp": 1, "tensor": 1}
  fake = type("FakeMesh", (), {"shape": {"data": 2, "fsdp": 2, "tensor": 4}})()
  P = jax.sharding.PartitionSpec
  assert S.spec_for("llm/layers/mlp/gate/kernel", (3, 64, 88), fake) == P(None, "fsdp", "tensor")
  assert S.spec_for("llm/layers/mlp/down/kernel", (3, 88, 64), fake) == P(None, "tensor", "fsdp")
  assert S.spec_for("vision/layers/mlp/fc1/kernel", (3, 32, 50), fake) == P(None, "fsdp")  # 50 % 4 != 0
  assert S.spec_for("llm/embed_tokens", (321, 64), fake) == P(None, "fsdp")
  assert S.spec_for("llm/final_norm", (64,), fake) == P()
  assert S.spec_for("something/unknown", (64, 64), fake) == P()
  with pytest.raises(ValueError, match="devices"):
    S.make_mesh(data=2, tensor=4)
  # Logical axes: swapping the logical -> mesh map re-targets every rule at once.
  assert S.spec_for("vision/layers/attn/proj/kernel", (3, 32, 32), fake) == P(None, "tensor", "fsdp")
  tp_only = S.logical_rules(logical={"embed": None})
  assert S.spec_for("llm/layers/mlp/gate/kernel", (3, 64, 88), fake, tp_only) == P(None, None, "tensor")
  with pytest.raises(KeyError, match="unknown logical"):
    S.logical_rules(((r"x", ("nope",)),))
  # The config field: 'data,fsdp,tensor' sizes, '' = no mesh.
  assert S.mesh_from_spec("") is None and S.mesh_from_config({"mesh": "none"}) is None
  assert dict(S.mesh_from_spec("-1,1,1").shape) == {"data": 1, "fsdp": 1, "tensor": 1}
  with pytest.raises(ValueError, match="data,fsdp,tensor"):
    S.mesh_from_spec("2x4")


def test_one_device_mesh_is_the_same_code_path(model_dir):
  """1 CPU device = a 1x1x1 mesh: the sharded stats step equals analysis.stats.make_step."""
  import mmneuron_jax
  from mmneuron_jax import sharding as S
  from mmneuron_jax.analysis import stats
  from mmneuron_jax.api import read_config
  from mmneuron_jax.loading import shardings_for_config
  from mmneuron_jax.loading import shardings_for_config
  mesh = S.make_mesh()
  model = mmneuron_jax.load_hf(model_dir, shardings=shardings_for_config(read_config(model_dir), mesh))
  batch = _batch()
  groups = model.token_groups(batch, np.array(SAMPLE_GROUPS))
  want = stats.make_step(model, NUM_GROUPS)(model.params, model.device_batch(batch), stats.to_device_groups(groups))
  got = stats.make_step(model.on_mesh(mesh), NUM_GROUPS)(model.params, model.host_batch(batch), groups)
  for m in want:
    for field in want[m]:
      np.testing.assert_array_equal(np.asarray(got[m][field]), np.asarray(want[m][field]), err_msg=f"{field}/{m}")


if __name__ == "__main__":
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  sys.path[:0] = [root, os.path.join(root, "tests")]
  run_worker(*sys.argv[1:4])
