"""The README's ```python blocks run as written: in order, in one namespace (as a notebook would), on
the bundled trained demo checkpoint, offline, with 8 host CPU devices for the mesh example."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# After the blocks: what they left behind has the documented shapes (the 2-row batch of the mesh block).
EPILOGUE = '''
import numpy as np
assert tokens.shape == (2, 4), tokens.shape
assert np.isfinite(np.asarray(out.logits)).all() and out.logits.shape[:2] == batch["input_ids"].shape
assert model.mesh is not None and model.mesh.shape == {"data": 2, "fsdp": 1, "tensor": 4}
print("README BLOCKS OK")
'''


def python_blocks(text: str) -> list[str]:
  return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_readme_python_blocks_run(tmp_path):
  with open(os.path.join(ROOT, "README.md")) as f:
    blocks = python_blocks(f.read())
  assert len(blocks) >= 2 and any("model.inputs(" in b for b in blocks)
  script = tmp_path / "readme_blocks.py"
  script.write_text("\n".join(f"# --- README block {i}\n{b}" for i, b in enumerate(blocks)) + EPILOGUE)
  flags = ("--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0 "
           "--xla_llvm_disable_expensive_passes=true")
  env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1",
             PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
  proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
  assert "README BLOCKS OK" in proc.stdout, proc.stdout[-3000:]
