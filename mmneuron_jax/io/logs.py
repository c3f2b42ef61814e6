"""Quiet logs by default: the libraries' chatter leaves the log (and a notebook's output) to the run.

`quiet()` (called on `import mmneuron_jax`) drops orbax's INFO / DEBUG records (a dozen lines per
checkpoint save or restore under absl INFO) and transformers' advisory "PyTorch was not found"
warning; warnings and errors of every library still show. `quiet(False)` brings the chatter back.
"""
import logging
import os

# Records logged from files under these package directories are dropped below WARNING.
CHATTY = ("orbax",)


class _DropChatter(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno >= logging.WARNING:
      return True
    parts = os.path.normpath(record.pathname or "").split(os.sep)
    return not any(p in parts for p in CHATTY)


_FILTER = _DropChatter()


def quiet(on: bool = True) -> None:
  """Drop (on) or keep (off) the chatter; idempotent. orbax logs through absl's python logger 'absl'."""
  logger = logging.getLogger("absl")
  if on:
    if _FILTER not in logger.filters:
      logger.addFilter(_FILTER)
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")  # read when transformers warns
  else:
    logger.removeFilter(_FILTER)
