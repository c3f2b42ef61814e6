"""Every analysis step on a mesh equals the single-device result: 8 fake CPU devices, meshes 2x4
(data x tensor) and 8x1 (data), a tiny Qwen2-VL (M-RoPE position_ids [3, B, T], 8 rows with one
image each) placed with `sharding.load_on_mesh` (= load_hf(shardings=...).on_mesh(mesh)).

Checked through the public calls on a model `on_mesh`: `model.apply` with masks + the MINER
probe + the logit lens, `grad_importance` and `model.generate` (masked, greedy); InstructBLIP
params placed by the same rules; sharded loading reading each device's slice only (a
byte-counting reader on an fsdp=8 mesh). Statistics (`sharding.stats_step`): tests/test_sharding.py.

The 8-device part runs in one subprocess (XLA_FLAGS=--xla_force_host_platform_device_count=8).
Tolerances (fp32; only the reduction order differs): masked logits atol 1e-5; MINER scores
(min-max normalised) atol 1e-5; lens entropy and target log-prob atol 5e-5 nats, identical top-1;
grad importance atol 1e-6 + 1e-4 x the largest gradient; greedy tokens identical.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

MESHES = {"data2_tensor4": (2, 1, 4), "data8": (8, 1, 1)}
SIZES = [(28, 28), (56, 28), (28, 56), (56, 56), (28, 28), (56, 56), (28, 56), (56, 28)]  # one image a row
TEXT = [(2, 3), (1, 4), (3, 1), (2, 2), (4, 3), (1, 1), (2, 5), (3, 2)]                 # tokens before / after
NEW_TOKENS = 4
IMAGE, VIDEO, START, END = 300, 301, 302, 303  # the tiny config of test_qwen2_vl_parity
MINER_IDS = dict(special_ids=(1, START, END), image_ids=(IMAGE,), video_ids=(VIDEO,), audio_ids=())


def _batch(config, padding_side):
  from PIL import Image
  from mmneuron_jax.data import qwen2_vl_inputs
  rng = np.random.default_rng(0)
  images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in SIZES]
  pix = qwen2_vl_inputs.image_processor(min_pixels=28 * 28, max_pixels=28 * 28 * 16)(images, return_tensors="np")
  rows = [[1] + list(rng.integers(3, 299, a)) + [START, IMAGE, END] + list(rng.integers(3, 299, b))
          for a, b in TEXT]
  return qwen2_vl_inputs.build_batch(rows, pix["pixel_values"], pix["image_grid_thw"], config, padding_side)


def _max_abs(a, b) -> float:
  return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def _spec(spec) -> list:
  return [list(a) if isinstance(a, tuple) else a for a in spec]


def _results(model, batch, left, masks, probe, lens, answer):
  """The analysis calls under test, as numpy."""
  from mmneuron_jax.analysis.importance import grad_importance
  out = model.apply(model.params, batch, masks=masks, probe={"llm": probe}, lens=lens)
  grads = grad_importance(model, model.params, batch, answer, modules=("llm", "vision"))
  tokens = model.generate(model.params, left, max_new_tokens=NEW_TOKENS, masks=masks, eos_token_id=-1)
  r = {"logits": out.logits, "miner": out.probe["llm"], "tokens": tokens,
       **{f"lens/{k}": v for k, v in out.lens.items()}, **{f"grad/{k}": v for k, v in grads.items()}}
  return {k: np.asarray(v) for k, v in r.items()}, out.logits.sharding


class CountingReader:
  """Wraps a CheckpointReader; records the bytes of every tensor read (whole or slice)."""

  def __init__(self, reader):
    self.reader, self.reads = reader, {}

  def __getattr__(self, name):
    return getattr(self.reader, name)

  def get(self, name):
    x = self.reader.get(name)
    self.reads.setdefault(name, []).append(x.nbytes)
    return x

  def get_slice(self, name, index):
    x = self.reader.get_slice(name, index)
    self.reads.setdefault(name, []).append(x.nbytes)
    return x


def _read_report(model_dir):
  """fsdp=8 mesh: per sharded param, the HF tensors' largest single read vs their full size."""
  import jax
  from mmneuron_jax import sharding as S
  from mmneuron_jax.api import read_config
  from mmneuron_jax.convert import mapping, transforms
  from mmneuron_jax.convert.safetensors_reader import CheckpointReader
  from mmneuron_jax.models.registry import family_for
  config = read_config(model_dir)
  family = family_for(config)
  rules = family.rules(family.parse_config(config))
  mesh = S.make_mesh(data=1, fsdp=8)
  shardings = S.shardings_for_config(config, mesh)
  reader = CountingReader(CheckpointReader(model_dir))
  params = mapping.apply_rules(reader, rules, ignore=list(family.ignore), shardings=shardings)
  out = {}
  for plan in mapping.plan_rules(reader, rules, family.ignore):
    spec = mapping._lookup(shardings, plan.rule.path).spec
    if all(a is None for a in spec):
      continue
    names = [n for layer in plan.names for n in layer]
    full = sum(int(np.prod(reader.shape(n))) * reader.dtype(n).itemsize for n in names)
    out["/".join(plan.rule.path)] = {
        "sliceable": plan.rule.transform in transforms.SLICEABLE and len(plan.names[0]) == 1,
        "largest_read": max(max(reader.reads[n]) for n in names), "full_per_layer": full // len(names),
        "total_read": sum(sum(reader.reads[n]) for n in names), "full": full,
        "device_shard": list(jax.tree_util.tree_leaves(mapping._lookup(params, plan.rule.path))[0]
                             .addressable_shards[0].data.shape)}
  return out


def run_worker(model_dir, blip_dir, out_file):
  """In the 8-device subprocess: single-device reference vs every mesh -> JSON of max diffs."""
  import jax
  import mmneuron_jax
  from mmneuron_jax import sharding as S
  from mmneuron_jax.analysis.logit_lens import Lens, positions_where
  from mmneuron_jax.analysis.miner_probe import MinerScores

  assert jax.device_count() == 8, jax.devices()
  ref = mmneuron_jax.load_hf(model_dir)
  batch, left = _batch(ref.config, "right"), _batch(ref.config, "left")
  rng = np.random.default_rng(1)
  masks = {m: (rng.random(shape) > 0.2).astype(np.float32) for m, shape in ref.probe_modules.items()}
  probe = MinerScores.from_batch(batch, family=None, **MINER_IDS)
  positions = positions_where(batch["input_ids"] == ref.config["image_token_id"])
  ids = batch["input_ids"]
  lens = Lens(positions, np.take_along_axis(ids, np.clip(positions + 1, 0, ids.shape[1] - 1), 1), 5)
  am = batch["attention_mask"].astype(bool)
  answer = np.zeros_like(am)
  for b, n in enumerate(am.sum(1)):
    answer[b, n - 3:n] = True
  want, _ = _results(ref, batch, left, masks, probe, lens, answer)
  valid = positions >= 0
  report = {"reads": _read_report(model_dir), "meshes": {},
            "scale": {k: float(np.abs(v).max()) for k, v in want.items() if k.startswith(("grad/", "miner"))}}
  blip_ref = mmneuron_jax.load_hf(blip_dir)
  for name, sizes in MESHES.items():
    mesh = S.make_mesh(*sizes)
    model = S.load_on_mesh(model_dir, mesh)
    got, logits_sharding = _results(model, batch, left, masks, probe, lens, answer)
    r = {"logits_sharding": _spec(logits_sharding.spec),
         "gate_shard": list(model.params["llm"]["layers"]["mlp"]["gate"]["kernel"].addressable_shards[0].data.shape),
         "vision_qkv_spec": _spec(model.params["vision"]["layers"]["attn"]["qkv"]["kernel"].sharding.spec),
         "tokens_equal": bool((got["tokens"] == want["tokens"]).all()), "tokens_nonpad": int((got["tokens"] > 0).sum()),
         "lens/top1_mismatch": int((got["lens/top_ids"][..., 0] != want["lens/top_ids"][..., 0])[:, valid].sum())}
    for k in want:
      if k.startswith("lens/"):
        if k in ("lens/entropy", "lens/target_logprob"):
          r[k] = _max_abs(got[k][:, valid], want[k][:, valid])
      elif k != "tokens":
        r[k] = _max_abs(got[k], want[k])
    blip = S.load_on_mesh(blip_dir, mesh)
    same = jax.tree_util.tree_map(lambda a, b: bool((np.asarray(a) == np.asarray(b)).all()), blip.params,
                                  blip_ref.params)
    r["blip_params_equal"] = all(jax.tree_util.tree_leaves(same))
    r["blip_specs"] = {p: _spec(s) for p, _, s in S.describe(blip.params, mesh)
                       if p in ("qformer/layers/ffn_query/fc1/kernel", "vision/layers/mlp/fc2/kernel",
                                "vision/layers/attn/proj/kernel")}
    report["meshes"][name] = r
  with open(out_file, "w") as f:
    json.dump(report, f, indent=1)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
  import test_instructblip_parity as ib
  import test_qwen2_vl_parity as q
  root = tmp_path_factory.mktemp("sharding_analysis")
  model_dir, blip_dir, out_file = str(root / "qwen2_vl"), str(root / "instructblip"), str(root / "report.json")
  hf = q.build_hf(model_dir, kv_heads=2)
  assert (hf.config.image_token_id, hf.config.video_token_id, hf.config.vision_start_token_id) == (IMAGE, VIDEO, START)
  ib.build_instructblip(blip_dir, "freq2_mha")
  flags = ("--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0 "
           "--xla_llvm_disable_expensive_passes=true")
  env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, os.path.abspath(__file__), model_dir, blip_dir, out_file], env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
  with open(out_file) as f:
    return json.load(f)


def test_analysis_steps_equal_single_device(report):
  assert sorted(report["meshes"]) == sorted(MESHES)
  scale = report["scale"]
  assert scale["grad/llm"] > 1e-3 and scale["grad/vision"] > 1e-4 and scale["miner"] > 0.5
  for name, r in report["meshes"].items():
    assert r["logits"] <= 1e-5, (name, r["logits"])
    assert r["miner"] <= 1e-5, (name, r["miner"])
    assert r["lens/entropy"] <= 5e-5 and r["lens/target_logprob"] <= 5e-5, name
    assert r["lens/top1_mismatch"] == 0, name
    for m in ("llm", "vision"):
      assert r[f"grad/{m}"] <= 1e-6 + 1e-4 * scale[f"grad/{m}"], (name, m, r[f"grad/{m}"])
    assert r["tokens_equal"] and r["tokens_nonpad"] > 0, name
    assert r["blip_params_equal"], name


def test_params_and_outputs_are_really_split(report):
  # Qwen2-VL MLP gate [L=2, D=64, F=88]: F over tensor=4 on the 2x4 mesh, whole on data=8.
  assert report["meshes"]["data2_tensor4"]["gate_shard"] == [2, 64, 22]
  assert report["meshes"]["data8"]["gate_shard"] == [2, 64, 88]
  assert report["meshes"]["data2_tensor4"]["vision_qkv_spec"] == [None, None, "tensor"]
  assert report["meshes"]["data2_tensor4"]["logits_sharding"] == ["data"]
  assert report["meshes"]["data8"]["logits_sharding"] == ["data"]
  # InstructBLIP: Q-Former FFN, EVA MLP and EVA attention output follow the same logical rules.
  assert report["meshes"]["data2_tensor4"]["blip_specs"] == {
      "qformer/layers/ffn_query/fc1/kernel": [None, None, "tensor"],
      "vision/layers/mlp/fc2/kernel": [None, "tensor"], "vision/layers/attn/proj/kernel": [None, "tensor"]}


def test_sharded_loading_reads_only_device_slices(report):
  """fsdp=8: a param split 8 ways is read as 8 slices, each 1/8 of the tensor, each once."""
  reads = report["reads"]
  sliced = {p: r for p, r in reads.items() if r["sliceable"]}
  assert "llm/layers/mlp/gate/kernel" in sliced and "llm/embed_tokens" in sliced
  for path, r in sliced.items():
    assert r["largest_read"] * 8 == r["full_per_layer"], (path, r)
    assert r["total_read"] == r["full"], (path, r)
  assert reads["llm/layers/mlp/gate/kernel"]["device_shard"] == [2, 8, 88]
  assert not [p for p, r in reads.items() if not r["sliceable"]]  # no sharded param needs a full read


if __name__ == "__main__":
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  sys.path[:0] = [root, os.path.join(root, "tests")]
  run_worker(*sys.argv[1:4])
