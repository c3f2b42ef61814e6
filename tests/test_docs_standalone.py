"""The repository stands alone: nothing in it points to files outside it or to issue numbers, and
the paths and names that docs/DESIGN.md and docs/ALGORITHMS.md cite exist."""
import importlib
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP_DIRS = {".venv", ".git", "__pycache__", ".pytest_cache", "runs", "build", "dist"}
THIS = os.path.abspath(__file__)
# A docs link is fine (`docs/DESIGN.md`, or `DESIGN.md` inside docs/); a bare top-level one is not.
OUTSIDE = [(re.compile(r"\.\./shared"), "points outside the repository (a shared folder)"),
           (re.compile(r"REFERENCE\.md"), "names the old algorithms file (use docs/ALGORITHMS.md)"),
           (re.compile(r"(?<![\w/])DESIGN\.md"), "names a top-level DESIGN.md (use docs/DESIGN.md)"),
           (re.compile(r"\b[Ii]ssues? #?\d+"), "names an issue number")]
DOCS = ("docs/DESIGN.md", "docs/ALGORITHMS.md")
SUBPACKAGES = ("mmneuron_jax", "nn", "models", "convert", "sharding", "io", "analysis", "data", "tasks")


def _text_files():
  for dirpath, dirnames, filenames in os.walk(ROOT):
    dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info")]
    for name in filenames:
      path = os.path.join(dirpath, name)
      if path == THIS or os.path.getsize(path) > 2_000_000:
        continue
      try:
        with open(path, encoding="utf-8") as f:
          text = f.read()
      except (UnicodeDecodeError, OSError):
        continue  # binary
      if "\0" not in text:
        yield os.path.relpath(path, ROOT), text


def test_no_reference_outside_the_repo():
  bad = []
  for rel, text in _text_files():
    in_docs = rel.split(os.sep)[0] == "docs"
    for n, line in enumerate(text.splitlines(), 1):
      for pattern, why in OUTSIDE:
        if in_docs and "DESIGN" in why:
          continue  # relative links between the docs
        if pattern.search(line):
          bad.append(f"{rel}:{n}: {why}: {line.strip()[:100]}")
  assert not bad, "references outside the repository:\n" + "\n".join(bad)


def _read(doc):
  with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
    return f.read()


def _backticked(doc):
  return re.findall(r"`([^`\n]+)`", _read(doc))


def _basenames():
  names = set()
  for dirpath, dirnames, filenames in os.walk(ROOT):
    dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
    names.update(filenames)
  return names


@pytest.mark.parametrize("doc", DOCS)
def test_cited_paths_exist(doc):
  """Links, `path/to/file.py` and `folder/sub/` in the doc name real files or folders (relative to the
  repository, the package or docs/); a bare `file.py` (in a table row of its package) exists somewhere."""
  bases = (ROOT, os.path.join(ROOT, "mmneuron_jax"), os.path.join(ROOT, "docs"))
  basenames = _basenames()
  missing = [t for t in re.findall(r"\]\(([^)\s#]+)", _read(doc))
             if not t.startswith("http") and not any(os.path.exists(os.path.join(b, t)) for b in bases)]
  for token in _backticked(doc):
    if not re.fullmatch(r"[\w./-]+", token) or token.startswith(("runs/", "neurons/")):
      continue
    if "/" in token.rstrip("/"):
      if not any(os.path.exists(os.path.join(b, token)) for b in bases):
        missing.append(token)
    elif token.endswith((".py", ".sh")) and token not in basenames:
      missing.append(token)
  assert not missing, f"{doc} cites paths that do not exist: {sorted(set(missing))}"


@pytest.mark.parametrize("doc", DOCS)
def test_cited_names_exist(doc):
  """Dotted names rooted in the package (`analysis.dape.select`, `mmneuron_jax.load_hf`, ...) resolve."""
  missing = []
  for token in _backticked(doc):
    name = token.split("(")[0].strip()
    if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", name) or name.split(".")[0] not in SUBPACKAGES:
      continue
    parts = name.split(".")
    parts = parts if parts[0] == "mmneuron_jax" else ["mmneuron_jax"] + parts
    obj, i = None, len(parts)
    while i >= 1 and obj is None:  # the longest importable module prefix, then attributes
      try:
        obj = importlib.import_module(".".join(parts[:i]))
      except ModuleNotFoundError:
        i -= 1
    for attr in parts[i:]:
      obj = getattr(obj, attr, None)
    if obj is None:
      missing.append(name)
  assert not missing, f"{doc} cites names that do not exist: {sorted(set(missing))}"
