"""Resumable host-side accumulation of per-batch partial sums into a StatsStore.

    store = StatsStore.open_or_create(dir, spec, fingerprint)
    totals = accumulate(store, ((i + 1, b) for i, b in enumerate(plan)), step_fn, commit_every=20,
                        total=len(plan))

`batches` yields `(cursor_after, batch)` with strictly increasing cursors (samples or batches, the
caller's unit) in a deterministic order; `step_fn(batch)` returns {name: partial} (e.g. int32 /
float32 from a jitted step). Partials are added on the host into the store's int64 / float64 totals,
batch after batch, so a killed run that is resumed with the same stream skips what the store has
already counted and ends with bit-identical totals. Batches should be cheap descriptions (indices,
paths): skipped ones are produced by the iterator but never passed to step_fn.

A step split into host and device parts (`Step`: prepare = load / preprocess / pad, run = the
jitted step + its host copy) lets the host prepare the next batches while the device works:

    accumulate(store, stream, step.run, prepare=step.prepare, prefetch=2)

The fingerprint given to the store must cover everything that changes the stream, `step_fn` and
`stop` (model, data, plan, stopping target); accumulate checks what it can (cursor continuity).
"""
import collections
import contextlib
import dataclasses
from typing import Callable

import numpy as np
from absl import logging

from mmneuron_jax.io import prefetch as prefetching
from mmneuron_jax.io.progress import Progress


@dataclasses.dataclass(frozen=True)
class Step:
  """A step_fn in two parts: `prepare(batch)` (host preprocessing, may run ahead on another thread)
  and `run(prepared) -> {name: partial}` (the device work). Calling it runs both in line."""
  prepare: Callable
  run: Callable

  def __call__(self, batch):
    return self.run(self.prepare(batch))


_Acc = collections.namedtuple("_Acc", "totals cursor batches")
META = "accumulate"  # key of this driver's metadata in the store's `extra`


def check_partial(partial, spec: dict, cursor_after: int) -> dict:
  """step_fn output -> {name: array of the spec dtype}; exact names and shapes, lossless casts only."""
  if not isinstance(partial, dict):
    raise TypeError(f"step_fn for the batch ending at cursor {cursor_after} returned "
                    f"{type(partial).__name__}, expected a dict of arrays")
  missing, unknown = sorted(set(spec) - set(partial)), sorted(set(partial) - set(spec))
  if missing or unknown:
    raise ValueError(f"step_fn output at cursor {cursor_after}: missing {missing}, unknown {unknown} "
                     f"(expected the store's names {sorted(spec)})")
  out = {}
  for name, (shape, dtype) in sorted(spec.items()):
    a = np.asarray(partial[name])
    if a.shape != tuple(shape):
      raise ValueError(f"step_fn output {name!r} at cursor {cursor_after}: shape {a.shape}, expected {tuple(shape)}")
    if not np.can_cast(a.dtype, dtype, "safe"):
      raise ValueError(f"step_fn output {name!r} at cursor {cursor_after}: dtype {a.dtype} does not fit "
                       f"the total's {dtype} without loss")
    out[name] = a.astype(dtype)
  return out


def add_totals(totals: dict, partial: dict) -> dict:
  """New dict of totals + partial, names in sorted order (inputs untouched)."""
  return {name: totals[name] + partial[name] for name in sorted(totals)}


def check_cursor(cursor_after, previous: int | None) -> int:
  """Cursors are ints that strictly increase along the stream."""
  if isinstance(cursor_after, (bool, np.bool_)) or not isinstance(cursor_after, (int, np.integer)):
    raise TypeError(f"batches must yield (cursor_after: int, batch); got cursor {cursor_after!r}")
  cursor_after = int(cursor_after)
  if previous is not None and cursor_after <= previous:
    raise ValueError(f"batch cursors must strictly increase: {cursor_after} after {previous}")
  return cursor_after


def check_resume_point(store_cursor: int, previous: int | None, cursor_after: int) -> None:
  """The first batch not yet counted must start exactly where the store stopped."""
  start = 0 if previous is None else previous
  if start != store_cursor:
    raise ValueError(f"the store's cursor is {store_cursor} but the stream has no batch ending "
                     f"there (batch ending at {cursor_after} starts at {start}); the stream differs from the "
                     "one that filled the store")


def _commit(store, acc: _Acc, stopped: bool, extra: dict | None) -> None:
  meta = {META: {"batches": acc.batches, "stopped": bool(stopped), "cursor": acc.cursor}}
  store.commit(acc.totals, acc.cursor, {**(extra or {}), **meta})


def _uncounted(batches, store_cursor: int, path):
  """The stream's batches the store has not counted yet, after the cursor checks (strictly
  increasing; the first new batch starts at the store's cursor; the stream reaches it)."""
  previous, resumed = None, store_cursor == 0
  for cursor_after, batch in batches:
    cursor_after = check_cursor(cursor_after, previous)
    if cursor_after <= store_cursor:
      previous = cursor_after
      continue  # counted by an earlier run
    if not resumed:
      check_resume_point(store_cursor, previous, cursor_after)
      resumed = True
    previous = cursor_after
    yield cursor_after, batch
  if previous is not None and previous < store_cursor:
    raise ValueError(f"store {path} is at cursor {store_cursor} but the stream ends at {previous}; "
                     "the stream differs from the one that filled the store")


def _prepared(new, prepare, depth: int):
  """(cursor_after, batch) -> ((cursor_after, batch), prepare(batch)), `depth` batches ahead; no
  prepare: the batch itself."""
  if prepare is None:
    return ((item, item[1]) for item in new)
  return prefetching.prefetch(new, lambda item: prepare(item[1]), depth)


def accumulate(store, batches, step_fn, commit_every: int = 10, progress=True, stop=None,
               total: int | None = None, extra: dict | None = None, desc: str = "accumulate",
               prepare=None, prefetch: int = 0) -> dict:
  """Add step_fn(batch) over the stream into the store's totals; resumable. Returns the totals.

  commit_every: commit after this many newly counted batches (and always at the end, or on an
    exception / KeyboardInterrupt, so the work done so far is kept).
  progress: True for a default Progress (rate, ETA when `total` is given, in cursor units),
    False for none, or a Progress instance to share.
  stop: optional `stop(totals) -> bool`, checked after each batch; when true the totals are
    committed with `stopped` recorded, and a later resume returns them without reading further.
  extra: caller metadata merged into the store state at every commit.
  prepare: optional host part of the step: step_fn then receives prepare(batch). Only batches not
    yet counted are prepared; an exception in prepare surfaces at its batch, after the batches
    before it are counted (and committed).
  prefetch: with prepare, run it this many batches ahead on a background thread
    (`io.prefetch`), overlapping host preprocessing with step_fn; 0 = in line.
  """
  if commit_every < 1:
    raise ValueError(f"commit_every must be >= 1, got {commit_every}")
  spec = store.spec
  meta = store.extra.get(META, {})
  acc = _Acc(store.totals(), store.cursor, int(meta.get("batches", 0)))
  if meta.get("stopped"):
    logging.info("%s: %s already met its stopping rule at cursor %d; not reading further", desc, store.path,
                 acc.cursor)
    return acc.totals
  if acc.cursor:
    logging.info("%s: resuming %s at cursor %d", desc, store.path, acc.cursor)
  bar = progress if isinstance(progress, Progress) else (
      Progress(total, desc, unit="items", initial=acc.cursor) if progress else None)
  pending, stopped = 0, False
  try:
    with contextlib.closing(_prepared(_uncounted(batches, store.cursor, store.path), prepare, prefetch)) as work:
      for (cursor_after, _), batch in work:
        partial = check_partial(step_fn(batch), spec, cursor_after)
        acc = _Acc(add_totals(acc.totals, partial), cursor_after, acc.batches + 1)  # one atomic rebinding
        pending += 1
        if bar is not None:
          bar.set(acc.cursor)
        if stop is not None and stop(acc.totals):
          stopped = True
          logging.info("%s: stopping rule met at cursor %d", desc, acc.cursor)
          break
        if pending >= commit_every:
          _commit(store, acc, False, extra)
          pending = 0
  except BaseException:
    if pending:
      try:
        _commit(store, acc, False, extra)
      except Exception:  # keep the original error; the last good commit is still on disk
        logging.exception("%s: could not commit %s while handling an error", desc, store.path)
    if bar is not None and not isinstance(progress, Progress):
      bar.close("interrupted")
    raise
  if pending or stopped or store.generation is None:
    _commit(store, acc, stopped, extra)
  if bar is not None and not isinstance(progress, Progress):
    bar.close()
  return acc.totals
