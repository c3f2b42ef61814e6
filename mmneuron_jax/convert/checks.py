"""Allowlist checks on HF config fields: refuse what we do not implement, by name."""
from mmneuron_jax.errors import UserError


class UnsupportedConfigError(UserError):
  """A HF config field holds a feature this codebase does not implement."""


def reject_unsupported(where: str, fields: dict):
  """fields: name -> (value, allowed set). Raises naming every unsupported field."""
  bad = [f"{where}.{name}={value!r} (supported: {sorted(map(repr, allowed))})"
         for name, (value, allowed) in fields.items() if value not in allowed]
  if bad:
    raise UnsupportedConfigError("unsupported HF config feature(s): " + "; ".join(bad))
