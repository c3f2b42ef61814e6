"""Run host preprocessing ahead of the consumer on a background thread, in order.

    for item, prepared in prefetch(batches, prepare, depth=2):
      out = device_step(prepared)   # prepare(next batches) runs meanwhile

Contract of `prefetch(items, fn, depth)`:
- yields `(item, fn(item))` for every item of `items`, in the input order;
- depth > 0: `fn` runs on one background thread, at most `depth` items ahead of the one the
  consumer holds; `items` itself is read on the consumer's thread, `depth + 1` items ahead;
- an exception raised by `fn(item)` is re-raised in the consumer when it reaches that item (the
  original exception, its traceback still holding the worker's frames); one raised by `items`
  is re-raised after every item before it has been yielded; results computed for later items
  are dropped;
- closing the iterator (consumer `break`, exception, `close()`, garbage collection) cancels the
  work not started, waits for the one call in progress and stops the thread: nothing is left
  running. Close it explicitly (`contextlib.closing`) where the consumer may stop early;
- depth == 0: no thread, a plain lazy sequential map.
`fn` runs on another thread: it must not rely on thread-local state of the consumer (JAX's
`with jax.default_device(...)` / precision contexts are thread-local).
"""
import collections
from concurrent import futures

THREAD_NAME = "prefetch"


def prefetch(items, fn, depth: int = 2):
  """-> iterator of (item, fn(item)) in the order of `items`, fn run up to `depth` items ahead."""
  if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
    raise ValueError(f"prefetch depth must be an int >= 0, got {depth!r}")
  if depth == 0:
    return ((item, fn(item)) for item in items)
  return _ahead(iter(items), fn, depth)


class _Failed:
  """A window entry for an exception raised by the item iterator."""

  def __init__(self, error: BaseException):
    self.error = error


def _ahead(items, fn, depth: int):
  pool = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD_NAME)
  window = collections.deque()  # (item, Future) in order, or (None, _Failed) last
  done = False
  try:
    while True:
      while not done and len(window) <= depth:
        try:
          item = next(items)
        except StopIteration:
          done = True
        except Exception as e:  # surfaces after the items before it
          window.append((None, _Failed(e)))
          done = True
        else:
          window.append((item, pool.submit(fn, item)))
      if not window:
        return
      item, result = window.popleft()
      if isinstance(result, _Failed):
        raise result.error
      yield item, result.result()
  finally:
    pool.shutdown(wait=True, cancel_futures=True)
