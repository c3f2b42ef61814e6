"""Every analysis step on a mesh equals the single-device result: 8 fake CPU devices, meshes 2x4
(data x tensor) and 8x1 (data), a tiny Qwen2-VL (M-RoPE position_ids [3, B, T], 8 rows with one
image each) placed with `mmneuron_jax.load_on_mesh` (= load_hf(shardings=...).on_mesh(mesh)); tiny
InstructBLIP, Qwen2-Audio, Qwen2.5-VL and LLaVA-OneVision placed by the same rules (params equal, specs
checked; Qwen2.5-VL's masked forward with both probe modules captured, images and video, and
LLaVA-OneVision's (8 rows, anyres-max packing with the bilinear shrink) with all three captured, equal
to their single-device ones).

Checked through the public calls on a model `on_mesh`: `model.apply` with masks + the MINER
probe + the logit lens, `grad_importance` and `model.generate` (masked, greedy); sharded loading
reading each device's slice only (a byte-counting reader on an fsdp=8 mesh); an orbax copy
restored onto that mesh against sharded abstract targets. Statistics
(`analysis.stats.make_step`): tests/test_sharding.py.

Three concurrent subprocesses: the single-device reference (1 CPU device, plain jit path, no mesh)
and one per mesh (XLA_FLAGS=--xla_force_host_platform_device_count=8); this process compares.
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
# InstructBLIP and Qwen2-Audio params on the 2x4 mesh: the same logical rules, other paths.
OTHER_SPECS = {"instructblip:qformer/layers/ffn_query/fc1/kernel": [None, None, "tensor"],
               "instructblip:vision/layers/mlp/fc2/kernel": [None, "tensor"],
               "instructblip:vision/layers/attn/proj/kernel": [None, "tensor"],
               "qwen2_audio:audio/layers/mlp/fc1/kernel": [None, None, "tensor"],
               "qwen2_audio:audio/layers/attn/o/kernel": [None, "tensor"],
               "qwen2_audio:llm/layers/mlp/down/kernel": [None, "tensor"],
               "qwen2_5_vl:vision/layers/mlp/gate/kernel": [None, None, "tensor"],
               "qwen2_5_vl:vision/layers/mlp/down/kernel": [None, "tensor"]}
OV_SIZES = [(60, 64), (30, 100), (28, 28), (56, 56), (90, 88), (40, 90), (28, 56), (50, 50)]  # one image a row
MINER_IDS = dict(special_ids=(1, START, END), image_ids=(IMAGE,), video_ids=(VIDEO,), audio_ids=())


def _batch(config, padding_side):
  from PIL import Image
  from mmneuron_jax.data.inputs import qwen2_vl as qwen2_vl_inputs
  rng = np.random.default_rng(0)
  images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in SIZES]
  pix = qwen2_vl_inputs.image_processor(min_pixels=28 * 28, max_pixels=28 * 28 * 16)(images, return_tensors="np")
  rows = [[1] + list(rng.integers(3, 299, a)) + [START, IMAGE, END] + list(rng.integers(3, 299, b))
          for a, b in TEXT]
  return qwen2_vl_inputs.build_batch(rows, pix["pixel_values"], pix["image_grid_thw"], config, padding_side)


def _build_audio(path):
  """A tiny random Qwen2-Audio (small vocabulary: only its params are placed here)."""
  import torch
  import transformers
  torch.manual_seed(0)
  text = dict(model_type="qwen2", vocab_size=320, hidden_size=48, intermediate_size=88, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
  audio = dict(model_type="qwen2_audio_encoder", num_mel_bins=128, encoder_layers=2, encoder_attention_heads=4,
               encoder_ffn_dim=72, d_model=40, max_source_positions=50)
  config = transformers.Qwen2AudioConfig(audio_config=audio, text_config=text, audio_token_index=IMAGE)
  transformers.Qwen2AudioForConditionalGeneration(config).save_pretrained(path)


def _onevision_batch(config):
  """8 right-padded rows, one image each (test_llava_onevision_parity's tiny config), as numpy."""
  import test_llava_onevision_parity as ov
  return ov.batch_for(config, OV_SIZES, [2 + i % 4 for i in range(len(OV_SIZES))])


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
  from mmneuron_jax.loading import shardings_for_config
  from mmneuron_jax.convert.safetensors_reader import CheckpointReader
  from mmneuron_jax.models.registry import family_for
  config = read_config(model_dir)
  family = family_for(config)
  rules = family.hf_rules(family.Config.from_hf(config))
  mesh = S.make_mesh(data=1, fsdp=8)
  shardings = shardings_for_config(config, mesh)
  reader = CountingReader(CheckpointReader(model_dir))
  params = mapping.apply_rules(reader, rules, ignore=list(family.IGNORE), shardings=shardings)
  out = {}
  for plan in mapping.plan_rules(reader, rules, family.IGNORE):
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


def _load_batches(path):
  data = np.load(path)
  return [{k.split("/", 1)[1]: data[k] for k in data.files if k.startswith(side + "/")} for side in ("right", "left")]


def _inputs(model, batch_file):
  """The shared inputs: right- and left-padded batches, masks, MINER probe, lens, answer mask."""
  from mmneuron_jax.analysis.logit_lens import Lens, positions_where
  from mmneuron_jax.analysis.miner_probe import MinerScores
  batch, left = _load_batches(batch_file)
  rng = np.random.default_rng(1)
  masks = {m: (rng.random(shape) > 0.2).astype(np.float32) for m, shape in sorted(model.probe_modules.items())}
  probe = MinerScores.from_batch(batch, **MINER_IDS)
  positions = positions_where(batch["input_ids"] == IMAGE)
  ids = batch["input_ids"]
  lens = Lens(positions, np.take_along_axis(ids, np.clip(positions + 1, 0, ids.shape[1] - 1), 1), 5)
  am = batch["attention_mask"].astype(bool)
  answer = np.zeros_like(am)
  for b, n in enumerate(am.sum(1)):
    answer[b, n - 3:n] = True
  return batch, left, masks, probe, lens, answer


def _orbax_report(model_dir, out_dir):
  """`convert` to orbax, then `load_on_mesh` on fsdp=8 restores against sharded abstract targets:
  the same values and shardings as loading the HF checkpoint onto that mesh."""
  import jax
  import mmneuron_jax
  from mmneuron_jax import sharding as S
  mesh = S.make_mesh(data=1, fsdp=8)
  ck = mmneuron_jax.convert_checkpoint(model_dir, os.path.join(out_dir, "orbax"))
  restored, loaded = mmneuron_jax.load_on_mesh(ck, mesh), mmneuron_jax.load_on_mesh(model_dir, mesh)
  pairs = list(zip(jax.tree_util.tree_leaves(restored.params), jax.tree_util.tree_leaves(loaded.params)))
  gate = restored.params["llm"]["layers"]["mlp"]["gate"]["kernel"]
  return {"equal": all(bool((np.asarray(a) == np.asarray(b)).all()) for a, b in pairs),
          "same_shardings": all(a.sharding == b.sharding for a, b in pairs),
          "split": sum(not a.sharding.is_fully_replicated for a, _ in pairs),
          "gate_shard": list(gate.addressable_shards[0].data.shape), "on_mesh": restored.mesh is mesh}


def run_worker(model_dir, blip_dir, audio_dir, out_dir, name):
  """One subprocess: `name` = 'reference' (1 device, no mesh: the plain jit path) or a mesh of
  MESHES (8 devices) -> <out_dir>/<name>.npz (results) + <name>.json (layout facts)."""
  import jax
  import mmneuron_jax
  from mmneuron_jax import sharding as S

  meta = {}
  if name == "reference":
    assert jax.device_count() == 1, jax.devices()
    model = mmneuron_jax.load_hf(model_dir)
    got, _ = _results(model, *_inputs(model, os.path.join(out_dir, "batches.npz")))
  else:
    assert jax.device_count() == 8, jax.devices()
    mesh = S.make_mesh(*MESHES[name])
    model = mmneuron_jax.load_on_mesh(model_dir, mesh)
    got, logits_sharding = _results(model, *_inputs(model, os.path.join(out_dir, "batches.npz")))
    specs = {}
    q25_dir, ov_dir = os.path.join(out_dir, "qwen2_5_vl"), os.path.join(out_dir, "llava_onevision")
    for family, path in (("instructblip", blip_dir), ("qwen2_audio", audio_dir), ("qwen2_5_vl", q25_dir),
                         ("llava_onevision", ov_dir)):
      other, other_ref = mmneuron_jax.load_on_mesh(path, mesh), mmneuron_jax.load_hf(path)
      same = jax.tree_util.tree_map(lambda a, b: bool((np.asarray(a) == np.asarray(b)).all()), other.params,
                                    other_ref.params)
      meta[f"{family}_params_equal"] = all(jax.tree_util.tree_leaves(same))
      specs.update({f"{family}:{p}": _spec(s) for p, _, s in S.describe(other.params, mesh)})
      if family == "qwen2_5_vl":  # the window-attention tower and M-RoPE decoder on the mesh
        batch = dict(np.load(os.path.join(out_dir, "qwen2_5_vl_batch.npz")))
        masks = {k: (np.arange(np.prod(v)).reshape(v) % 7 != 0).astype(np.float32)
                 for k, v in other.probe_modules.items()}
        run = lambda m: m.apply(m.params, batch, masks=masks, capture=("llm", "vision"))
        got_q, want_q = run(other), run(other_ref)
        meta["qwen2_5_vl_max_abs"] = max(_max_abs(np.asarray(got_q.logits), np.asarray(want_q.logits)),
                                         *(_max_abs(np.asarray(got_q.aux[k]), np.asarray(want_q.aux[k]))
                                           for k in ("llm", "vision")))
      if family == "llava_onevision":  # anyres-max packing: the bilinear taps gather across the data axis
        batch = dict(np.load(os.path.join(out_dir, "llava_onevision_batch.npz")))
        masks = {k: (np.arange(np.prod(v)).reshape(v) % 5 != 0).astype(np.float32)
                 for k, v in other.probe_modules.items()}
        modules = tuple(other.probe_modules)
        run = lambda m: m.apply(m.params, batch, masks=masks, capture=modules)
        got_o, want_o = run(other), run(other_ref)
        meta["llava_onevision_max_abs"] = max(_max_abs(np.asarray(got_o.logits), np.asarray(want_o.logits)),
                                              *(_max_abs(np.asarray(got_o.aux[k]), np.asarray(want_o.aux[k]))
                                                for k in modules))
    meta.update({"logits_sharding": _spec(logits_sharding.spec),
            "gate_shard": list(model.params["llm"]["layers"]["mlp"]["gate"]["kernel"].addressable_shards[0]
                               .data.shape),
            "vision_qkv_spec": _spec(model.params["vision"]["layers"]["attn"]["qkv"]["kernel"].sharding.spec),
            "specs": {k: v for k, v in specs.items() if k in OTHER_SPECS}})
    if name == "data8":
      meta["reads"], meta["orbax"] = _read_report(model_dir), _orbax_report(model_dir, out_dir)
  np.savez(os.path.join(out_dir, f"{name}.npz"), **got)
  with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
    json.dump(meta, f, indent=1)


def _compare(got, want, valid) -> dict:
  """Max differences of one mesh's results vs the single-device ones."""
  r = {"tokens_equal": bool((got["tokens"] == want["tokens"]).all()), "tokens_nonpad": int((got["tokens"] > 0).sum()),
       "lens/top1_mismatch": int((got["lens/top_ids"][..., 0] != want["lens/top_ids"][..., 0])[:, valid].sum())}
  for k in want:
    if k in ("lens/entropy", "lens/target_logprob"):
      r[k] = _max_abs(got[k][:, valid], want[k][:, valid])
    elif not k.startswith("lens/") and k != "tokens":
      r[k] = _max_abs(got[k], want[k])
  return r


@pytest.fixture(scope="module")
def report(tmp_path_factory):
  """Runs the reference and mesh workers concurrently, then compares -> {'meshes', 'scale', 'reads'}."""
  import test_instructblip_parity as ib
  import test_llava_onevision_parity as ov
  import test_qwen2_vl_parity as q
  root = tmp_path_factory.mktemp("sharding_analysis")
  model_dir, blip_dir, audio_dir = str(root / "qwen2_vl"), str(root / "instructblip"), str(root / "qwen2_audio")
  hf = q.build_hf(model_dir, kv_heads=2)
  assert (hf.config.image_token_id, hf.config.video_token_id, hf.config.vision_start_token_id) == (IMAGE, VIDEO, START)
  ib.build_instructblip(blip_dir, "freq2_mha")
  _build_audio(audio_dir)
  import test_qwen2_5_vl_parity as q25
  q25_hf = q25.build_hf(str(root / "qwen2_5_vl"))
  np.savez(root / "qwen2_5_vl_batch.npz", **q25.make_batch(q25_hf.config))
  ov_hf = ov.build(str(root / "llava_onevision"), aspect="anyres_max_1", kv_heads=2)
  np.savez(root / "llava_onevision_batch.npz", **_onevision_batch(ov_hf.config))
  config = hf.config.to_dict()
  np.savez(root / "batches.npz", **{f"{side}/{k}": np.asarray(v) for side in ("right", "left")
                                    for k, v in _batch(config, side).items()})  # workers need no transformers
  # Cheaper XLA CPU codegen (compile time dominates); the same flags for the reference and the meshes.
  flags = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
  procs = {}
  try:
    for name in ("reference",) + tuple(MESHES):  # concurrently: compiling is mostly single-threaded
      devices = 1 if name == "reference" else 8
      env = dict(os.environ, JAX_PLATFORMS="cpu",
                 XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} {flags}")
      log = open(root / f"{name}.log", "w")  # a file, not a pipe: a worker never blocks on output
      procs[name] = subprocess.Popen([sys.executable, os.path.abspath(__file__), model_dir, blip_dir, audio_dir, str(root), name],
                                     env=env, stdout=log, stderr=subprocess.STDOUT)
      log.close()
    for name, proc in procs.items():
      proc.wait(timeout=600)
  finally:
    for proc in procs.values():
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  for name, proc in procs.items():
    assert proc.returncode == 0, f"{name}:\n" + (root / f"{name}.log").read_text()[-6000:]
  want = dict(np.load(root / "reference.npz"))
  from mmneuron_jax.analysis.logit_lens import positions_where
  valid = positions_where(_load_batches(root / "batches.npz")[0]["input_ids"] == IMAGE) >= 0  # lens positions
  meta = {"meshes": {}, "scale": {k: float(np.abs(v).max()) for k, v in want.items() if k.startswith(("grad/", "miner"))}}
  for name in MESHES:
    with open(root / f"{name}.json") as f:
      meta["meshes"][name] = json.load(f)
    meta["meshes"][name].update(_compare(dict(np.load(root / f"{name}.npz")), want, valid))
  meta["reads"], meta["orbax"] = meta["meshes"]["data8"].pop("reads"), meta["meshes"]["data8"].pop("orbax")
  return meta


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
    assert r["instructblip_params_equal"] and r["qwen2_audio_params_equal"] and r["qwen2_5_vl_params_equal"], name
    assert r["qwen2_5_vl_max_abs"] <= 1e-5, (name, r["qwen2_5_vl_max_abs"])
    assert r["llava_onevision_params_equal"], name
    assert r["llava_onevision_max_abs"] <= 1e-5, (name, r["llava_onevision_max_abs"])


def test_params_and_outputs_are_really_split(report):
  # Qwen2-VL MLP gate [L=2, D=64, F=88]: F over tensor=4 on the 2x4 mesh, whole on data=8.
  assert report["meshes"]["data2_tensor4"]["gate_shard"] == [2, 64, 22]
  assert report["meshes"]["data8"]["gate_shard"] == [2, 64, 88]
  assert report["meshes"]["data2_tensor4"]["vision_qkv_spec"] == [None, None, "tensor"]
  assert report["meshes"]["data2_tensor4"]["logits_sharding"] == ["data"]
  assert report["meshes"]["data8"]["logits_sharding"] == ["data"]
  # InstructBLIP (Q-Former FFN, EVA MLP and attention output) and Qwen2-Audio (Whisper encoder, LLM).
  assert report["meshes"]["data2_tensor4"]["specs"] == OTHER_SPECS


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


def test_orbax_restore_onto_a_mesh(report):
  r = report["orbax"]
  assert r["equal"] and r["same_shardings"] and r["on_mesh"], r
  assert r["split"] >= 10 and r["gate_shard"] == [2, 8, 88], r


if __name__ == "__main__":
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  sys.path[:0] = [root, os.path.join(root, "tests")]
  run_worker(*sys.argv[1:6])
