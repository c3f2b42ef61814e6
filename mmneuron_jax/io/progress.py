"""Rate-limited progress logging for long loops: done/total, items/s, ETA.

    progress = Progress(total=len(records), desc="stats (samples)")
    for chunk in chunks(records, 8):
      ...
      progress.update(len(chunk))
    progress.close()

Under `absl.app` (the command line: flags parsed) it logs through absl logging, at most one line every
`every_s` seconds plus a final line on close(); elsewhere (a notebook, a script) it draws a
`tqdm.auto` bar (a widget in Jupyter) with the same numbers. The rate and ETA leave out the first
update (the step that compiles): until a second update they read '?'.
"""
import sys
import time

try:
  from absl import flags as _absl_flags
  from absl import logging as _absl_logging
except ImportError:  # pragma: no cover - absl is a dependency, but keep the helper standalone
  _absl_flags = _absl_logging = None
try:
  from tqdm import auto as _tqdm
except ImportError:  # pragma: no cover - tqdm is a dependency
  _tqdm = None


def under_absl_app() -> bool:
  """True inside `absl.app.run` (flags parsed): progress goes to the absl log, not a bar."""
  return _absl_flags is not None and _absl_flags.FLAGS.is_parsed()


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


def format_tail(done: int, total: int | None, rate: float | None, elapsed: float, unit: str = "it") -> str:
  """'<rate> <unit>/s, elapsed H:MM:SS[, eta H:MM:SS]' (pure)."""
  rate_s = f"{rate:.3g} {unit}/s" if rate else f"? {unit}/s"
  eta = (total - done) / rate if (total and rate) else None
  tail = f", eta {format_duration(eta)}" if total else ""
  return f"{rate_s}, elapsed {format_duration(elapsed)}{tail}"


def format_line(desc: str, done: int, total: int | None, rate: float | None, elapsed: float,
                unit: str = "it") -> str:
  """One progress line from plain numbers (pure; used by Progress)."""
  head = f"{desc}: " if desc else ""
  if total:
    head += f"{done}/{total} ({100.0 * done / total:.1f}%)"
  else:
    head += f"{done}"
  return f"{head}, {format_tail(done, total, rate, elapsed, unit)}"


class Progress:
  """Counts work done and logs rate / ETA at most every `every_s` seconds.

  `initial` is work already done before this run (e.g. a resumed cursor): it counts towards
  done/total but not towards the rate. `log` overrides the sink (a callable taking a str; no bar then).
  `bar`: draw a tqdm bar instead of log lines (default: when not under `absl.app` and no `log`).
  """

  def __init__(self, total: int | None = None, desc: str = "", unit: str = "it", every_s: float = 5.0,
               initial: int = 0, log=None, clock=time.monotonic, bar: bool | None = None):
    self.total, self.desc, self.unit, self.every_s = total, desc, unit, every_s
    self.initial = self.done = int(initial)
    self._log = log or default_log
    self._clock = clock
    self._start = self._last = clock()
    self._first = None  # (time, done) at the first update: the rate starts there (compile excluded)
    self._closed = False
    if bar is None:
      bar = log is None and _tqdm is not None and not under_absl_app()
    self._bar = (_tqdm.tqdm(total=total, desc=desc, unit=unit, initial=self.initial, dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} {postfix}" if total else
                            "{desc}: {n_fmt} {postfix}") if bar else None)

  @property
  def elapsed(self) -> float:
    return self._clock() - self._start

  @property
  def rate(self) -> float | None:
    """Items per second after the first update (the step that compiles); None until a second update."""
    if self._first is None:
      return None
    seconds, new = self._clock() - self._first[0], self.done - self._first[1]
    return new / seconds if (new > 0 and seconds > 0) else None

  @property
  def overall_rate(self) -> float | None:
    """Items per second over this run, the first update included (None before anything was done)."""
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
    if self._first is None and self.done > self.initial:
      self._first = (now, self.done)
    if self._bar is not None:
      self._bar.n = self.done
      self._bar.set_postfix_str(format_tail(self.done, self.total, self.rate, self.elapsed, self.unit))
    elif now - self._last >= self.every_s:
      self._last = now
      self._log(self.line())

  def close(self, status: str = "done") -> None:
    """Log the final line once (the rate over the whole run when there was a single update)."""
    if self._closed:
      return
    self._closed = True
    rate = self.rate or self.overall_rate
    if self._bar is not None:
      self._bar.n = self.done
      self._bar.set_postfix_str(f"{format_tail(self.done, self.total, rate, self.elapsed, self.unit)} ({status})")
      self._bar.close()
    else:
      self._log(f"{format_line(self.desc, self.done, self.total, rate, self.elapsed, self.unit)} ({status})")

  def __enter__(self):
    return self

  def __exit__(self, exc_type, *_):
    self.close("done" if exc_type is None else f"stopped: {exc_type.__name__}")
    return False
