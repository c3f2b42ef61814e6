"""Rate-limited progress logging for long loops: done/total, items/s, ETA.

    progress = Progress(total=len(records), desc="stats (samples)")
    for chunk in chunks(records, 8):
      ...
      progress.update(len(chunk))
    progress.close()

Logs through absl logging when it is installed, else prints to stderr; at most one line every
`every_s` seconds, plus a final line on close().
"""
import sys
import time

try:
  from absl import logging as _absl_logging
except ImportError:  # pragma: no cover - absl is a dependency, but keep the helper standalone
  _absl_logging = None


def default_log(message: str) -> None:
  if _absl_logging is not None:
    _absl_logging.info("%s", message)
  else:
    print(message, file=sys.stderr, flush=True)


def format_duration(seconds: float | None) -> str:
  """Seconds -> 'H:MM:SS' ('?' when unknown)."""
  if seconds is None or seconds != seconds or seconds == float("inf"):
    return "?"
  seconds = int(round(max(0.0, seconds)))
  return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def format_line(desc: str, done: int, total: int | None, rate: float | None, elapsed: float,
                unit: str = "it") -> str:
  """One progress line from plain numbers (pure; used by Progress)."""
  head = f"{desc}: " if desc else ""
  if total:
    head += f"{done}/{total} ({100.0 * done / total:.1f}%)"
  else:
    head += f"{done}"
  rate_s = f"{rate:.3g} {unit}/s" if rate else f"? {unit}/s"
  eta = (total - done) / rate if (total and rate) else None
  tail = f", eta {format_duration(eta)}" if total else ""
  return f"{head}, {rate_s}, elapsed {format_duration(elapsed)}{tail}"


class Progress:
  """Counts work done and logs rate / ETA at most every `every_s` seconds.

  `initial` is work already done before this run (e.g. a resumed cursor): it counts towards
  done/total but not towards the rate. `log` overrides the sink (a callable taking a str).
  """

  def __init__(self, total: int | None = None, desc: str = "", unit: str = "it", every_s: float = 5.0,
               initial: int = 0, log=None, clock=time.monotonic):
    self.total, self.desc, self.unit, self.every_s = total, desc, unit, every_s
    self.initial = self.done = int(initial)
    self._log = log or default_log
    self._clock = clock
    self._start = self._last = clock()
    self._closed = False

  @property
  def elapsed(self) -> float:
    return self._clock() - self._start

  @property
  def rate(self) -> float | None:
    """Items per second over this run (None before anything was done)."""
    elapsed, new = self.elapsed, self.done - self.initial
    return new / elapsed if (new > 0 and elapsed > 0) else None

  def line(self) -> str:
    return format_line(self.desc, self.done, self.total, self.rate, self.elapsed, self.unit)

  def update(self, n: int = 1) -> None:
    """Add n items of work done."""
    self.set(self.done + n)

  def set(self, done: int) -> None:
    """Set the absolute amount of work done; logs when `every_s` has passed since the last line."""
    self.done = int(done)
    now = self._clock()
    if now - self._last >= self.every_s:
      self._last = now
      self._log(self.line())

  def close(self, status: str = "done") -> None:
    """Log the final line once."""
    if not self._closed:
      self._closed = True
      self._log(f"{self.line()} ({status})")

  def __enter__(self):
    return self

  def __exit__(self, exc_type, *_):
    self.close("done" if exc_type is None else f"stopped: {exc_type.__name__}")
    return False
