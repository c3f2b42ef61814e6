"""StatsStore commits atomically and `accumulate` resumes after SIGKILL with bit-identical totals."""
import json
import os
import random
import runpy
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mmneuron_jax.io.accumulate import accumulate
from mmneuron_jax.io import stats_store
from mmneuron_jax.io.progress import Progress, format_duration
from mmneuron_jax.io.stats_store import StatsStore, StatsStoreError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A self-contained worker: a deterministic stream of random partial sums, accumulated into a store.
# argv: store_dir sleep_s [mode marker_path]; mode 'arrays' / 'state' pauses (after touching the
# marker) once the new generation's arrays are written / once the temp state file is fsynced.
WORKER = r'''
import os, sys, time
import numpy as np
from mmneuron_jax.io import stats_store
from mmneuron_jax.io.stats_store import StatsStore
from mmneuron_jax.io.accumulate import accumulate

N = 200
SHAPE = (3, 4, 64)
SPEC = {"counts/llm": (SHAPE, "int64"), "sums/llm": (SHAPE, "float64"), "sumsq/llm": (SHAPE, "float64"),
        "n_tokens/llm": ((3,), "int64"), "n_batches": ((), "int64")}


def partial(i):
  rng = np.random.default_rng([2024, i])
  x = (rng.standard_normal(SHAPE) * 10.0 ** rng.integers(-3, 4)).astype(np.float32)
  return {"counts/llm": rng.integers(0, 100, SHAPE, dtype=np.int32), "sums/llm": x, "sumsq/llm": x * x,
          "n_tokens/llm": rng.integers(0, 50, 3, dtype=np.int32), "n_batches": np.int32(1)}


def stream(n=N):
  return ((i + 1, i) for i in range(n))


def run(path, sleep=0.0, commit_every=5):
  store = StatsStore.open_or_create(path, SPEC, "fp-test")
  def step(i):
    if sleep:
      time.sleep(sleep)
    return partial(i)
  return store, accumulate(store, stream(), step, commit_every=commit_every, progress=False)


def pause_in_commit(mode, marker):
  """Make the second commit of this process stall inside its crash window."""
  calls = {"n": 0}
  def stall():
    calls["n"] += 1
    if calls["n"] == 2:
      open(marker, "w").close()
      time.sleep(30)
  if mode == "arrays":
    write_arrays = stats_store.write_arrays
    def slow_write_arrays(root, arrays):
      write_arrays(root, arrays)
      stall()
    stats_store.write_arrays = slow_write_arrays
  elif mode == "state":
    replace = os.replace
    def slow_replace(src, dst):
      if dst.endswith(stats_store.STATE):
        stall()
      replace(src, dst)
    stats_store.os.replace = slow_replace


if __name__ == "__main__":
  if len(sys.argv) > 3:
    pause_in_commit(sys.argv[3], sys.argv[4])
  run(sys.argv[1], float(sys.argv[2]))
'''


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
  """(script path, its namespace) for subprocess and in-process runs of the same stream."""
  path = tmp_path_factory.mktemp("worker") / "worker.py"
  path.write_text(WORKER)
  return str(path), runpy.run_path(str(path), run_name="worker")


def small_spec():
  return {"counts/llm": ((2, 3, 5), "int64"), "sums/llm": ((2, 3, 5), "float64"), "n_tokens/llm": ((2,), "int64")}


def random_totals(seed):
  rng = np.random.default_rng(seed)
  return {"counts/llm": rng.integers(0, 1 << 40, (2, 3, 5)), "sums/llm": rng.standard_normal((2, 3, 5)),
          "n_tokens/llm": rng.integers(0, 1000, 2)}


def assert_same(a: dict, b: dict):
  assert sorted(a) == sorted(b)
  for k in a:
    assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


# ----------------------------------------------------------------------------- store basics

def test_roundtrip_and_reopen(tmp_path):
  path = str(tmp_path / "s")
  store = StatsStore.open_or_create(path, small_spec(), "fp1")
  assert store.cursor == 0 and store.generation is None
  assert all(not v.any() for v in store.totals().values())
  t1, t2 = random_totals(1), random_totals(2)
  store.commit(t1, 7, {"config": "abc"})
  store.commit(t2, 9, {"note": 1})
  again = StatsStore.open_or_create(path, small_spec(), "fp1")
  assert again.cursor == 9 and again.extra == {"config": "abc", "note": 1}
  assert_same(again.totals(), t2)
  assert again.totals()["sums/llm"].dtype == np.float64
  assert [e for e in os.listdir(path) if e.startswith("gen_")] == [stats_store.gen_dirname(again.generation)]


def test_fingerprint_and_spec_mismatch(tmp_path):
  path = str(tmp_path / "s")
  StatsStore.open_or_create(path, small_spec(), "fp1").commit(random_totals(0), 3)
  with pytest.raises(StatsStoreError, match=r"state.json: .*field 'fingerprint' is 'fp1'.*'fp2'"):
    StatsStore.open_or_create(path, small_spec(), "fp2")
  bad_shape = {**small_spec(), "sums/llm": ((2, 3, 6), "float64")}
  with pytest.raises(StatsStoreError, match=r"field 'spec': array 'sums/llm': stored shape"):
    StatsStore.open_or_create(path, bad_shape, "fp1")
  bad_dtype = {**small_spec(), "counts/llm": ((2, 3, 5), "int32")}
  with pytest.raises(StatsStoreError, match=r"array 'counts/llm': stored dtype int64"):
    StatsStore.open_or_create(path, bad_dtype, "fp1")
  with pytest.raises(StatsStoreError, match=r"array 'extra/x' is requested"):
    StatsStore.open_or_create(path, {**small_spec(), "extra/x": ((1,), "int64")}, "fp1")


def test_commit_validation(tmp_path):
  store = StatsStore.open_or_create(str(tmp_path / "s"), small_spec(), "fp")
  t = random_totals(0)
  with pytest.raises(StatsStoreError, match=r"'sums/llm' has shape"):
    store.commit({**t, "sums/llm": np.zeros((2, 3))}, 1)
  with pytest.raises(StatsStoreError, match=r"'counts/llm' has dtype float64"):
    store.commit({**t, "counts/llm": np.zeros((2, 3, 5))}, 1)
  with pytest.raises(StatsStoreError, match=r"missing \['n_tokens/llm'\]"):
    store.commit({k: v for k, v in t.items() if k != "n_tokens/llm"}, 1)
  store.commit(t, 5)
  with pytest.raises(StatsStoreError, match=r"cursor 4 < stored cursor 5"):
    store.commit(t, 4)
  with pytest.raises(StatsStoreError, match=r"bad component"):
    StatsStore.open_or_create(str(tmp_path / "t"), {"a/../b": ((1,), "int64")}, "fp")
  with pytest.raises(StatsStoreError, match=r"nest"):
    StatsStore.open_or_create(str(tmp_path / "t"), {"a": ((1,), "int64"), "a/b": ((1,), "int64")}, "fp")


def test_crash_leftovers_are_ignored_then_removed(tmp_path):
  path = str(tmp_path / "s")
  store = StatsStore.open_or_create(path, small_spec(), "fp")
  t = random_totals(3)
  store.commit(t, 2)
  os.makedirs(os.path.join(path, "gen_000099", "sums"))  # a half-written generation
  open(os.path.join(path, "state.json.tmp.12345"), "w").write("{trunc")  # an unfinished state write
  again = StatsStore.open_or_create(path, small_spec(), "fp")
  assert again.cursor == 2
  assert_same(again.totals(), t)
  again.commit(t, 3)
  assert again.generation == 100
  assert sorted(os.listdir(path)) == ["gen_000100", "state.json"]


def test_corrupt_array_is_detected(tmp_path):
  path = str(tmp_path / "s")
  store = StatsStore.open_or_create(path, small_spec(), "fp")
  store.commit(random_totals(4), 1)
  other = str(tmp_path / "o")
  StatsStore.open_or_create(other, small_spec(), "fp").commit(random_totals(5), 1)
  gen = stats_store.gen_dirname(1)
  chunk = os.path.join("sums", "llm", "0.0.0")
  os.replace(os.path.join(other, gen, chunk), os.path.join(path, gen, chunk))
  with pytest.raises(StatsStoreError, match=r"'sums/llm' does not match its checksum"):
    StatsStore.open_or_create(path, small_spec(), "fp").totals()


def test_not_a_store_dir(tmp_path):
  (tmp_path / "s").mkdir()
  (tmp_path / "s" / "something.txt").write_text("x")
  with pytest.raises(StatsStoreError, match=r"not empty and has no state.json"):
    StatsStore.open_or_create(str(tmp_path / "s"), small_spec(), "fp")


# ----------------------------------------------------------------------------- accumulate

def test_accumulate_stop_rule_and_error_resume(tmp_path, worker):
  _, w = worker
  spec, partial, stream = w["SPEC"], w["partial"], w["stream"]

  ref = accumulate(StatsStore.open_or_create(str(tmp_path / "ref"), spec, "fp"), stream(40), partial,
                   commit_every=3, progress=False)
  assert ref["n_batches"] == 40

  # a step that fails at batch 23: work so far is committed, the resumed run matches the reference
  def failing(i):
    if i == 22:
      raise RuntimeError("bad batch")
    return partial(i)
  store = StatsStore.open_or_create(str(tmp_path / "err"), spec, "fp")
  with pytest.raises(RuntimeError, match="bad batch"):
    accumulate(store, stream(40), failing, commit_every=10, progress=False)
  assert store.cursor == 22
  assert_same(accumulate(store, stream(40), partial, commit_every=10, progress=False), ref)

  # stop rule: recorded; a later call returns without calling step_fn
  store = StatsStore.open_or_create(str(tmp_path / "stop"), spec, "fp")
  out = accumulate(store, stream(40), partial, commit_every=100, progress=False,
                   stop=lambda t: t["n_batches"] >= 7)
  assert store.cursor == 7 and out["n_batches"] == 7 and store.extra["accumulate"]["stopped"] is True
  again = StatsStore.open_or_create(str(tmp_path / "stop"), spec, "fp")
  assert_same(accumulate(again, stream(40), lambda i: pytest.fail("step called"), progress=False), out)


def test_accumulate_rejects_a_different_stream(tmp_path, worker):
  _, w = worker
  store = StatsStore.open_or_create(str(tmp_path / "s"), w["SPEC"], "fp")
  accumulate(store, w["stream"](10), w["partial"], progress=False)
  with pytest.raises(ValueError, match=r"cursor is 10 but the stream has no batch ending there"):
    accumulate(store, ((3 * (i + 1), i) for i in range(10)), w["partial"], progress=False)
  with pytest.raises(ValueError, match=r"stream ends at 5"):
    accumulate(store, w["stream"](5), w["partial"], progress=False)
  with pytest.raises(ValueError, match=r"strictly increase"):
    accumulate(store, iter([(10, 9), (11, 10), (11, 11)]), w["partial"], progress=False)
  with pytest.raises(ValueError, match=r"missing \['n_batches'\]"):
    accumulate(store, w["stream"](12), lambda i: {k: v for k, v in w["partial"](i).items() if k != "n_batches"},
               progress=False)
  assert store.cursor == 11  # the good batch before the bad cursor was counted and committed


def test_progress_is_rate_limited():
  now, lines = [0.0], []
  p = Progress(total=100, desc="stats", every_s=5.0, initial=20, log=lines.append, clock=lambda: now[0])
  for _ in range(40):
    now[0] += 0.5
    p.update(1)
  p.close()
  assert len(lines) == 5  # at t = 5, 10, 15, 20 and the final line
  assert lines[0] == "stats: 30/100 (30.0%), 2 it/s, elapsed 0:00:05, eta 0:00:35"
  assert lines[-1].endswith("(done)") and "60/100" in lines[-1]
  assert format_duration(3725) == "1:02:05" and format_duration(None) == "?"


# ----------------------------------------------------------------------------- the kill test

def read_cursor(path):
  try:
    with open(os.path.join(path, "state.json")) as f:
      return json.load(f)["cursor"]
  except (FileNotFoundError, json.JSONDecodeError):
    return 0


def wait_for(cond, what, proc, timeout=20.0):
  deadline = time.monotonic() + timeout
  while not cond():
    if proc.poll() is not None:
      pytest.fail(f"worker exited (rc {proc.returncode}) before {what}: {proc.stderr.read().decode()[-2000:]}")
    if time.monotonic() > deadline:
      proc.kill()
      pytest.fail(f"timed out waiting for {what}")
    time.sleep(0.005)


def prefix_totals(w):
  """Reference totals after each cursor, accumulated exactly as accumulate does."""
  totals = {k: np.zeros(shape, dtype) for k, (shape, dtype) in w["SPEC"].items()}
  out = [totals]
  for _, i in w["stream"]():
    p = w["partial"](i)
    totals = {k: totals[k] + np.asarray(p[k]).astype(totals[k].dtype) for k in sorted(totals)}
    out.append(totals)
  return out


def test_sigkill_and_resume_is_bit_identical(tmp_path, worker):
  script, w = worker
  n = w["N"]
  _, ref = w["run"](str(tmp_path / "ref"))  # uninterrupted, in-process
  prefixes = prefix_totals(w)
  assert_same(prefixes[n], ref)

  path = str(tmp_path / "killed")
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
             JAX_PLATFORMS="cpu")
  rnd = random.Random(0)
  last = 0
  # random kill, kill between array write and state write, kill before the state rename, random kill
  for mode in ("random", "arrays", "state", "random"):
    marker = str(tmp_path / f"marker_{mode}_{last}")
    args = [sys.executable, script, path, "0.01"] + ([mode, marker] if mode != "random" else [])
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if mode == "random":
      wait_for(lambda: read_cursor(path) > last, "a new commit", proc)
      time.sleep(rnd.uniform(0.0, 0.08))
    else:
      wait_for(lambda: os.path.exists(marker), f"the {mode} crash window", proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "worker finished before it was killed"
    store = StatsStore.open_or_create(path, w["SPEC"], "fp-test")
    leftovers = os.listdir(path)
    if mode == "arrays":  # the new generation is on disk but the state still names the old one
      assert max(stats_store.existing_generations(path)) > store.generation
    if mode == "state":  # the fsynced temp state was never renamed
      assert any(e.startswith("state.json.tmp.") for e in leftovers)
    assert last <= store.cursor < n
    assert_same(store.totals(), prefixes[store.cursor])  # a consistent state: exactly the first `cursor` batches
    last = store.cursor

  store, totals = w["run"](path)  # resume in-process, no sleep
  assert store.cursor == n and totals["n_batches"] == n
  assert_same(totals, ref)
  assert_same(StatsStore.open_or_create(path, w["SPEC"], "fp-test").totals(), ref)
  assert sorted(os.listdir(path)) == [stats_store.gen_dirname(store.generation), "state.json"]
