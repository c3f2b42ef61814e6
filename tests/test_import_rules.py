"""The layering, read from the source (AST): no import cycle between the package's layers; the leaves
import no higher layer; in-function imports of the package only where a family is found by name."""
import ast
import pathlib

import mmneuron_jax

ROOT = pathlib.Path(mmneuron_jax.__file__).parent
LEAVES = {"sharding": set(), "convert": {"dtypes"}, "io": {"sharding", "dtypes"}}  # layer -> the layers it may import
# (file, function) pairs that may import from the package at call time: the dispatch by name of a
# family (model, inputs, demo checkpoint) and of a study (`config.task`).
DISPATCH = {("models/registry.py", "family"), ("data/inputs/__init__.py", "family"),
            ("data/synthetic/__init__.py", "demo_writer"), ("tasks/__init__.py", "run")}


def _imports():
  """-> [(file, enclosing function or None, imported mmneuron_jax module)]."""
  out = []
  for path in sorted(ROOT.rglob("*.py")):
    rel = path.relative_to(ROOT).as_posix()

    def visit(node, fn):
      for child in ast.iter_child_nodes(node):
        inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else fn
        names = [a.name for a in child.names] if isinstance(child, ast.Import) else []
        if isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
          names = [child.module + "." + a.name for a in child.names]
        if isinstance(child, ast.Call) and getattr(child.func, "attr", "") == "import_module":
          names = ["mmneuron_jax.<dispatch>"]
        out.extend((rel, fn, n) for n in names if n.split(".")[0] == "mmneuron_jax")
        visit(child, inner)

    visit(ast.parse(path.read_text(), rel), None)
  return out


def _layer(dotted: str) -> str:
  """'models/base.py' or 'mmneuron_jax.models.base' -> 'models'; a top-level module is its own layer."""
  parts = dotted.replace("/", ".").removesuffix(".py").split(".")
  parts = (parts[1:] if parts[0] == "mmneuron_jax" else parts) or ["__init__"]
  return parts[0] if parts[0] != "<dispatch>" else "models"


def _edges():
  return {(_layer(f), _layer(m)) for f, _, m in _imports() if _layer(f) != _layer(m) and _layer(f) != "__init__"}


def test_no_cycle_between_layers():
  graph = {}
  for a, b in _edges():
    graph.setdefault(a, set()).add(b)
  def reach(a, seen):
    for b in graph.get(a, ()):
      if b not in seen:
        seen.add(b)
        reach(b, seen)
    return seen
  cycles = sorted((a, b) for a, b in _edges() if a in reach(b, set()))
  assert not cycles, f"layer imports that close a cycle: {cycles}"


def test_leaves_import_no_higher_layer():
  bad = sorted((a, b) for a, b in _edges() if a in LEAVES and b not in LEAVES[a])
  assert not bad, f"a leaf imports a higher layer: {bad}"


def test_in_function_imports_only_for_family_dispatch():
  bad = sorted({(f, fn, m) for f, fn, m in _imports() if fn is not None and (f, fn) not in DISPATCH})
  assert not bad, f"in-function imports of mmneuron_jax outside the family dispatch: {bad}"
