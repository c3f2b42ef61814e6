"""`UserError`: a mistake the person running the tool can fix (bad path, config, data, checkpoint).

`launch/main.py` prints its message (one line or a short block) and exits non-zero without a
traceback; any other exception is an internal error and keeps its traceback.
"""


class UserError(ValueError):
  """A refusal whose message says what is wrong and how to fix it."""


def problems_error(title: str, problems: list) -> UserError:
  """One UserError listing every problem found, one per line."""
  return UserError(title + ":\n" + "\n".join(f"  - {p}" for p in problems))


class CheckpointError(UserError):
  """A checkpoint file that cannot be read; the message names the file."""


class MissingFile(UserError, FileNotFoundError):
  """A file the user named (or a checkpoint needs) does not exist; the message names it."""


def read_json(file: str, what: str = "JSON file"):
  """json.load(file); CheckpointError naming the file and the position when it is malformed."""
  import json
  if not __import__("os").path.isfile(file):
    raise MissingFile(f"{file}: no such {what}")
  try:
    with open(file) as f:
      return json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise CheckpointError(f"{file}: malformed {what} ({e})") from None
