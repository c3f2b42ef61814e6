"""`UserError`: a mistake the person running the tool can fix (bad path, config, data, checkpoint).

`launch/main.py` prints its message (one line or a short block) and exits non-zero without a
traceback; any other exception is an internal error and keeps its traceback.
"""


class UserError(ValueError):
  """A refusal whose message says what is wrong and how to fix it."""


def problems_error(title: str, problems: list) -> UserError:
  """One UserError listing every problem found, one per line."""
  return UserError(title + ":\n" + "\n".join(f"  - {p}" for p in problems))
