"""notebooks/quickstart.ipynb runs headless (nbclient) on the bundled demo, offline, in a kernel of
this interpreter (a kernelspec written for the test, so a fresh CI machine needs no registered kernel):
every cell without an error, the plots come back as PNG figures and the tables hold what they say."""
import json
import os
import sys

import pytest

if os.environ.get("CI"):  # the test extra installs them: a missing one is a failure there, a skip elsewhere
  import ipykernel  # noqa: F401
  import nbclient
  import nbformat
else:
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  pytest.importorskip("ipykernel")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "notebooks", "quickstart.ipynb")


def _kernelspec(tmp_path, monkeypatch) -> str:
  """A kernelspec named 'mmneuron-test' that starts `sys.executable -m ipykernel_launcher`."""
  spec = tmp_path / "jupyter" / "kernels" / "mmneuron-test"
  spec.mkdir(parents=True)
  (spec / "kernel.json").write_text(json.dumps({
      "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      "display_name": "mmneuron test", "language": "python"}))
  monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
  return "mmneuron-test"


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
  kernel = _kernelspec(tmp_path, monkeypatch)
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
  nb = nbformat.read(NOTEBOOK, as_version=4)
  client = nbclient.NotebookClient(nb, kernel_name=kernel, timeout=600, resources={"metadata": {"path": str(tmp_path)}})
  client.execute()  # raises CellExecutionError naming the cell on any error
  code = [c for c in nb.cells if c.cell_type == "code"]
  outputs = [o for c in code for o in c.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  pngs = [c for c in code if any("image/png" in o.get("data", {}) for o in c.outputs)]
  # the sample image, the neurons-per-layer Figure and the logit-lens Figure
  assert len(pngs) == 3, [c.source[:60] for c in pngs]
  text = lambda c: "".join(o.get("data", {}).get("text/plain", "") + o.get("text", "") for o in c.outputs)
  assert "'llm': (4, 96)" in text(code[0])
  table = text(next(c for c in code if "neurons off" in c.source))
  assert "all neurons on" in table and "documents neurons off" in table
  timing = lambda c: c.metadata.get("execution", {})
  start, end = timing(code[0]).get("iopub.execute_input"), timing(code[-1]).get("shell.execute_reply")
  print(f"notebook cells ran from {start} to {end}")
