"""`key=value,key2=value2` config arguments (`--config=configs/x.py:<arg>`), parsed without guessing.

A comma starts a new override only when `key=` follows it, so a tuple field takes a comma list
(`data.domains=medical,documents` -> ('medical', 'documents')) and a string may hold commas. A value
in matching quotes is taken literally (quotes stripped). Each value is converted to the type of the
field it replaces; an unknown key or a value that does not parse is refused naming the key.
"""
import re

from mmneuron_jax.errors import UserError

_SPLIT = re.compile(r",(?=\s*[A-Za-z_][\w.]*\s*=)")
_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")


def _unquote(v: str) -> str:
  v = v.strip()
  if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
    return v[1:-1]
  return v


def _convert(key: str, old, value: str):
  raw = value.strip()
  if isinstance(old, bool):
    if raw.lower() in _TRUE:
      return True
    if raw.lower() in _FALSE:
      return False
    raise UserError(f"config argument {key}={value!r}: expected true or false")
  if isinstance(old, (tuple, list)):
    if raw in ("", "()", "[]"):
      return type(old)()
    raw = raw[1:-1] if raw[:1] + raw[-1:] in ("()", "[]") else raw
    items = [_unquote(x) for x in raw.split(",") if x.strip()]
    kinds = {type(x) for x in old}
    if len(kinds) == 1 and kinds != {str}:
      kind = kinds.pop()
      items = [_convert(f"{key}[{i}]", kind(), x) for i, x in enumerate(items)]
    return type(old)(items)
  if isinstance(old, (int, float)) and not isinstance(old, bool):
    try:
      number = float(raw) if isinstance(old, float) else int(raw)
    except ValueError:
      raise UserError(f"config argument {key}={value!r}: expected {'a number' if isinstance(old, float) else 'an integer'}") from None
    return number
  if old is None or isinstance(old, str):
    return _unquote(raw)
  raise UserError(f"config argument {key}: a {type(old).__name__} field cannot be set from the command line")


def split(arg: str) -> list:
  """'a=1,b=x,y' -> [('a', '1'), ('b', 'x,y')]."""
  out = []
  for item in _SPLIT.split(arg):
    if "=" not in item:
      raise UserError(f"config argument {item!r}: expected key=value")
    key, value = item.split("=", 1)
    out.append((key.strip(), value))
  return out


def apply(c, arg):
  """Apply the overrides of `arg` to ConfigDict c (in place; returned)."""
  if not arg:
    return c
  for key, value in split(arg):
    node = c
    *parents, leaf = key.split(".")
    try:
      for p in parents:
        node = node[p]
      old = node[leaf]
    except (KeyError, AttributeError, TypeError):
      raise UserError(f"config argument {key}={value!r}: the config has no field {key!r}") from None
    node[leaf] = _convert(key, old, value)
  return c
