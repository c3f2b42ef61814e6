"""`io.prefetch` keeps order, bounds its lookahead, re-raises errors at their item and leaves no
thread behind; `accumulate(..., prepare, prefetch)` gives the totals of the sequential loop, keeps
the work before a failed prepare, and never prepares batches an earlier run counted."""
import contextlib
import threading
import time
import traceback

import numpy as np
import pytest

from mmneuron_jax.io.accumulate import Step, accumulate
from mmneuron_jax.io.prefetch import THREAD_NAME, prefetch
from mmneuron_jax.io.stats_store import StatsStore

SHAPE = (2, 3, 16)
SPEC = {"count": (SHAPE, "int64"), "sum": (SHAPE, "float64"), "n": ((), "int64")}


def prefetch_threads():
  return [t for t in threading.enumerate() if t.name.startswith(THREAD_NAME) and t.is_alive()]


def no_prefetch_thread():
  for _ in range(100):  # a pool thread may take a moment to exit after shutdown returns
    if not prefetch_threads():
      return True
    time.sleep(0.01)
  return False


def toy_step(calls=None, fail_at=None):
  """Step over batch indices: prepare builds float32 / int32 arrays on the host (recording what
  it prepared), run reduces them like a device step would."""
  def prepare(i):
    if calls is not None:
      calls.append(i)
    if i == fail_at:
      raise RuntimeError(f"bad batch {i}")
    rng = np.random.default_rng([7, i])
    time.sleep(0.002 * (i % 3))  # uneven host time: completion order differs from input order
    return rng.standard_normal(SHAPE).astype(np.float32) * 10.0 ** float(i % 5 - 2), rng.integers(0, 9, SHAPE)

  def run(prepared):
    x, k = prepared
    return {"count": (x > 0).astype(np.int32) + k.astype(np.int32), "sum": x, "n": np.int32(1)}

  return Step(prepare, run)


def stream(n):
  return ((i + 1, i) for i in range(n))


def store_at(path):
  return StatsStore.open_or_create(str(path), SPEC, "fp")


def assert_same(a, b):
  assert sorted(a) == sorted(b)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# ----------------------------------------------------------------------------- prefetch

@pytest.mark.parametrize("depth", [0, 1, 2, 5])
def test_order_kept_and_lookahead_bounded(depth):
  started, seen = [], []

  def fn(i):
    started.append(i)
    time.sleep(0.003 * ((7 * i) % 4))
    return i * i, threading.current_thread().name

  for item, (sq, thread) in prefetch(range(20), fn, depth):
    assert sq == item * item
    assert max(started) <= item + depth  # at most `depth` results ahead of the consumer
    assert thread.startswith(THREAD_NAME) == (depth > 0)
    seen.append(item)
  assert seen == list(range(20))
  assert no_prefetch_thread()


def test_rejects_a_bad_depth():
  for depth in (-1, 1.5, True):
    with pytest.raises(ValueError, match="depth"):
      prefetch([1], lambda x: x, depth)


@pytest.mark.parametrize("depth", [0, 2])
def test_error_in_fn_surfaces_at_its_item(depth):
  def failing_fn(i):
    if i == 3:
      raise KeyError(f"item {i}")
    return i

  got = []
  with pytest.raises(KeyError, match="item 3") as info:
    for item, out in prefetch(range(10), failing_fn, depth):
      got.append(out)
  assert got == [0, 1, 2]
  frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
  assert "failing_fn" in frames  # the original traceback, from the worker
  assert no_prefetch_thread()


def test_error_in_items_surfaces_after_the_items_before_it():
  def items():
    yield from range(4)
    raise ValueError("stream broke")

  got = []
  with pytest.raises(ValueError, match="stream broke"):
    for item, _ in prefetch(items(), lambda i: i, depth=3):
      got.append(item)
  assert got == [0, 1, 2, 3]
  assert no_prefetch_thread()


def test_consumer_stopping_early_stops_the_worker():
  calls = []

  def slow(i):
    calls.append(i)
    time.sleep(0.02)
    return i

  baseline = threading.active_count()
  for item, _ in prefetch(range(100), slow, depth=2):
    if item == 1:
      break
  assert no_prefetch_thread() and threading.active_count() <= baseline
  assert len(calls) <= 1 + 1 + 2 + 1  # the consumed ones, the lookahead, at most one more in flight

  it = prefetch(range(100), slow, depth=2)
  next(it)
  assert prefetch_threads()
  it.close()
  assert no_prefetch_thread()

  with pytest.raises(ZeroDivisionError):
    with contextlib.closing(prefetch(range(100), slow, depth=2)) as it:
      for item, _ in it:
        1 / (item - 2)
  assert no_prefetch_thread()


# ----------------------------------------------------------------------------- accumulate

def test_prefetched_totals_equal_the_sequential_ones(tmp_path):
  step = toy_step()
  plain = accumulate(store_at(tmp_path / "plain"), stream(25), step, commit_every=4, progress=False)
  for depth in (0, 2):
    store = store_at(tmp_path / f"p{depth}")
    out = accumulate(store, stream(25), step.run, commit_every=4, progress=False, prepare=step.prepare,
                     prefetch=depth)
    assert_same(out, plain)
    assert store.cursor == 25 and store.extra["accumulate"]["batches"] == 25
  assert no_prefetch_thread()


def test_failed_prepare_keeps_earlier_work_and_resume_skips_counted_batches(tmp_path):
  ref = accumulate(store_at(tmp_path / "ref"), stream(30), toy_step(), commit_every=5, progress=False)

  calls = []
  step = toy_step(calls, fail_at=17)
  store = store_at(tmp_path / "run")
  with pytest.raises(RuntimeError, match="bad batch 17"):
    accumulate(store, stream(30), step.run, commit_every=5, progress=False, prepare=step.prepare, prefetch=2)
  assert store.cursor == 17  # batches 0..16 counted and committed (15 by commit_every, 2 on the error)
  assert max(calls) <= 17 + 2 + 1
  assert no_prefetch_thread()

  calls = []
  step = toy_step(calls)
  store = store_at(tmp_path / "run")
  assert_same(accumulate(store, stream(30), step.run, commit_every=5, progress=False, prepare=step.prepare,
                         prefetch=2), ref)
  assert sorted(calls) == list(range(17, 30))  # nothing before the store's cursor was prepared

  calls = []
  assert_same(accumulate(store_at(tmp_path / "run"), stream(30), step.run, progress=False, prepare=step.prepare,
                         prefetch=2), ref)
  assert calls == []  # a finished store prepares nothing


def test_stream_errors_and_stop_rule_with_prefetch(tmp_path):
  step = toy_step()
  store = store_at(tmp_path / "s")
  accumulate(store, stream(10), step, progress=False)
  with pytest.raises(ValueError, match=r"strictly increase"):
    accumulate(store, iter([(10, 9), (11, 10), (11, 11)]), step.run, progress=False, prepare=step.prepare,
               prefetch=2)
  assert store.cursor == 11  # the good batch before the bad cursor was counted and committed
  with pytest.raises(ValueError, match=r"cursor is 11 but the stream has no batch ending there"):
    accumulate(store, ((3 * (i + 1), i) for i in range(10)), step.run, progress=False, prepare=step.prepare,
               prefetch=2)
  with pytest.raises(ValueError, match=r"stream ends at 5"):
    accumulate(store, stream(5), step.run, progress=False, prepare=step.prepare, prefetch=2)

  stopped = store_at(tmp_path / "stop")
  out = accumulate(stopped, stream(40), step.run, commit_every=100, progress=False, prepare=step.prepare,
                   prefetch=2, stop=lambda t: t["n"] >= 7)
  assert stopped.cursor == 7 and out["n"] == 7 and stopped.extra["accumulate"]["stopped"] is True
  assert no_prefetch_thread()
