"""Two processes on localhost (jax.distributed over CPU, gloo collectives, 2 CPU devices each)
give the same statistics as one process over all batches.

  A. host-sharded: each process takes `host_shard` of the ordered batch list, runs the sharded
     stats step on a mesh of its own 2 devices, and `reduce_stats_across_hosts` sums the hosts.
  B. one global mesh (data=2 across the processes x tensor=2 inside each) over all 4 devices:
     params loaded with `mmneuron_jax.load_on_mesh`, `analysis.stats.make_step`, each host passing the
     same global batches.
Both must equal a single-process run: counts and token counts exact, sums atol 1e-4 (fp32).
On the global mesh, `model.apply` with a logit lens and `model.generate` too: every host reads
the same entropies (atol 5e-5 nats), top-1 tokens and greedy tokens as one process.
"""
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

NUM_GROUPS = 3
NUM_BATCHES = 5  # odd: the hosts get 3 and 2 batches
TIMEOUT_S = 300


def _batches():
  import hf_tiny
  from mmneuron_jax.data.inputs.batching import pad_batch
  cfg = hf_tiny.llava_next_config()
  sizes = [[(40, 90), (33, 33)], [(60, 50), (28, 28)], [(50, 50), (56, 30)], [(30, 60), (45, 45)],
           [(28, 56), (70, 40)]]
  out = []
  for i, pair in enumerate(sizes[:NUM_BATCHES]):
    b = pad_batch(hf_tiny.llava_next_batch(cfg, pair, [3 + i, 7 - i], seed=i), 2, 128, 5)
    groups = np.array([i % NUM_GROUPS, -1 if i == 1 else (i + 1) % NUM_GROUPS], np.int32)
    out.append((b, groups))
  return out


def _left_batch():
  """A left-padded batch of 2 for `apply` (logit lens) and `generate` on the global mesh."""
  import hf_tiny
  return hf_tiny.llava_next_batch(hf_tiny.llava_next_config(), [(40, 90), (33, 33)], [3, 7], pad_side="left")


def _lens_and_tokens(model, left):
  """model.apply with a logit lens at the image tokens + 3 greedy tokens -> numpy dict."""
  from mmneuron_jax.analysis.logit_lens import Lens, positions_where
  positions = positions_where(left["input_ids"] == model.config["image_token_index"])
  out = model.apply(model.params, left, lens=Lens(positions, None, 3))
  tokens = model.generate(model.params, left, max_new_tokens=3)
  assert isinstance(tokens, np.ndarray)
  return {"entropy": np.asarray(out.lens["entropy"]), "top1": np.asarray(out.lens["top_ids"])[..., 0],
          "tokens": tokens, "valid": positions >= 0}


def _save_batches(path, batches):
  arrays = {f"left/{k}": np.asarray(v) for k, v in _left_batch().items()}
  for i, (b, g) in enumerate(batches):
    arrays.update({f"{i}/{k}": np.asarray(v) for k, v in b.items()})
    arrays[f"{i}/sample_groups"] = g
  np.savez(path, **arrays)


def _load_batches(path):
  data = np.load(path)
  out = []
  for i in range(NUM_BATCHES):
    b = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith(f"{i}/")}
    out.append((b, b.pop("sample_groups")))
  return out


def _add(totals, part):
  for k, v in part.items():
    v = np.asarray(v)
    v = v.astype(np.int64 if np.issubdtype(v.dtype, np.integer) else np.float64)
    totals[k] = totals.get(k, 0) + v
  return totals


def run_worker(model_dir, batch_file, out_dir):
  """One of the two processes; the coordinator comes from MMNEURON_* environment variables."""
  from mmneuron_jax import distributed
  index, count = distributed.initialize_from_env()
  import jax
  import mmneuron_jax
  from mmneuron_jax import sharding as S
  from mmneuron_jax.analysis import stats
  from mmneuron_jax.api import read_config
  from mmneuron_jax.loading import shardings_for_config
  assert (count, jax.device_count(), jax.local_device_count()) == (2, 4, 2), (count, jax.devices())
  batches = _load_batches(batch_file)
  config = read_config(model_dir)

  # A: per-host mesh, this host's batches, sum across hosts.
  local = S.make_mesh(devices=jax.local_devices())
  model = mmneuron_jax.load_hf(model_dir, shardings=shardings_for_config(config, local)).on_mesh(local)
  step = stats.make_step(model, NUM_GROUPS)
  totals = {}
  mine = distributed.host_shard(list(range(NUM_BATCHES)))
  for i in mine:
    b, g = batches[i]
    totals = _add(totals, stats.flatten(step(model.params, model.host_batch(b), model.token_groups(b, g))))
  reduced = distributed.reduce_stats_across_hosts(totals)
  np.savez(os.path.join(out_dir, f"hosts_{index}.npz"), batches=np.array(mine), **reduced)

  # B: one mesh over both processes' devices; every host passes the same global batches.
  mesh = S.make_mesh(data=2, tensor=2)
  assert {d.process_index for d in mesh.devices[0].flat} == {0} and {d.process_index for d in mesh.devices[1].flat} == {1}
  model = mmneuron_jax.load_on_mesh(model_dir, mesh)  # = load_hf(shardings=shardings_for_config(...)).on_mesh(mesh)
  step = stats.make_step(model, NUM_GROUPS)   # replicated results come back as this host's numpy copy
  totals = {}
  for b, g in batches:
    out = step(model.params, model.device_batch(b), stats.to_device_groups(model.token_groups(b, g)))
    assert all(isinstance(v, np.ndarray) for v in stats.flatten(out).values())
    totals = _add(totals, stats.flatten(out))
  # model.apply (lens readouts replicated -> this host's numpy copy) and generate (tokens split on
  # B across the hosts -> gathered) on the same global mesh.
  data = np.load(batch_file)
  left = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith("left/")}
  got = _lens_and_tokens(model, left)
  assert isinstance(got["entropy"], np.ndarray)
  np.savez(os.path.join(out_dir, f"apply_{index}.npz"), **got)
  distributed.sync("done")
  if distributed.is_writer():
    np.savez(os.path.join(out_dir, "global.npz"), **totals)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  import hf_tiny
  model_dir = str(tmp_path_factory.mktemp("llava"))
  hf_tiny.build_llava_next(model_dir)
  batches = _batches()
  batch_file = str(tmp_path_factory.mktemp("batches") / "batches.npz")
  _save_batches(batch_file, batches)
  return model_dir, batch_file, batches


def _reference(model_dir, batches):
  import mmneuron_jax
  from mmneuron_jax.analysis import stats
  model = mmneuron_jax.load_hf(model_dir)
  step = stats.make_step(model, NUM_GROUPS)
  totals = {}
  for b, g in batches:
    out = step(model.params, model.device_batch(b), stats.to_device_groups(model.token_groups(b, g)))
    totals = _add(totals, stats.flatten(out))
  return totals


def _check(got, want, what):
  assert sorted(k for k in got if k != "batches") == sorted(want), what
  for k, v in want.items():
    if k.startswith(("count/", "tokens/")):
      assert got[k].dtype == np.int64, (what, k, got[k].dtype)
      np.testing.assert_array_equal(got[k], v, err_msg=f"{what}: {k}")
    else:
      np.testing.assert_allclose(got[k], v, rtol=0, atol=1e-4, err_msg=f"{what}: {k}")


def test_two_processes_equal_one(setup, tmp_path):
  model_dir, batch_file, batches = setup
  port = _free_port()
  procs = []
  for i in range(2):
    env = dict(os.environ, JAX_PLATFORMS="cpu", MMNEURON_COORDINATOR_ADDRESS=f"localhost:{port}",
               MMNEURON_NUM_PROCESSES="2", MMNEURON_PROCESS_ID=str(i),
               XLA_FLAGS="--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0 "
                         "--xla_llvm_disable_expensive_passes=true")
    procs.append(subprocess.Popen([sys.executable, os.path.abspath(__file__), model_dir, batch_file, str(tmp_path)],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
  want = _reference(model_dir, batches)  # meanwhile, in this (single-device) process
  logs = []
  try:
    for p in procs:
      logs.append(p.communicate(timeout=TIMEOUT_S)[0])
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  for i, p in enumerate(procs):
    assert p.returncode == 0, f"process {i} failed:\n" + "\n".join(log[-4000:] for log in logs)
  shards = []
  for i in range(2):
    got = dict(np.load(tmp_path / f"hosts_{i}.npz"))
    shards.append(got["batches"].tolist())
    _check(got, want, f"host-sharded, as seen by process {i}")
  assert shards == [[0, 1, 2], [3, 4]]
  _check(dict(np.load(tmp_path / "global.npz")), want, "global mesh")
  import mmneuron_jax
  ref = _lens_and_tokens(mmneuron_jax.load_hf(model_dir), _left_batch())
  for i in range(2):  # every host reads the same lens readouts and tokens as one process
    got = dict(np.load(tmp_path / f"apply_{i}.npz"))
    valid = ref["valid"]
    np.testing.assert_allclose(got["entropy"][:, valid], ref["entropy"][:, valid], rtol=0, atol=5e-5)
    np.testing.assert_array_equal(got["top1"][:, valid], ref["top1"][:, valid])
    np.testing.assert_array_equal(got["tokens"], ref["tokens"])
  assert want["tokens/llm"].sum() > 0 and want["count/vision"].sum() > 0


def test_host_shard_and_single_process_helpers():
  from mmneuron_jax import distributed
  items = list(range(10))
  parts = [distributed.host_shard(items, i, 3) for i in range(3)]
  assert parts == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
  assert distributed.host_shard(items[:2], 2, 3) == []
  with pytest.raises(ValueError):
    distributed.host_shard(items, 3, 3)
  assert distributed.initialize_from_env(env={}) == (0, 1)  # nothing asks for more: no-op
  with pytest.raises(ValueError, match="process id"):
    distributed.initialize_from_env(env={"MMNEURON_COORDINATOR_ADDRESS": "h:1", "MMNEURON_NUM_PROCESSES": "2"})
  assert distributed.is_writer()
  tree = {"count": np.array([1, 2], np.int32), "sum": np.array([0.5], np.float32)}
  out = distributed.reduce_stats_across_hosts(tree)
  assert out["count"].dtype == np.int64 and out["sum"].dtype == np.float64
  # The bit-exact word round trip used across hosts.
  for x in (np.array([2**40 + 3, -5], np.int64), np.array([1 / 3, -2.5e300]), np.array([7, 9], np.int32),
            np.array([True, False])):
    words = distributed._to_words(x)
    back = distributed._from_words(np.stack([words, words]), x)
    np.testing.assert_array_equal(back[1], x.astype(back.dtype))


if __name__ == "__main__":
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  sys.path[:0] = [root, os.path.join(root, "tests")]
  run_worker(*sys.argv[1:4])
