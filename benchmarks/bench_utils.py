"""Shared by the benchmark scripts: the commit, a timer, the measured matmul peak."""
import json
import os
import subprocess
import time


def _git_commit() -> str:
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True,
                           text=True).stdout.strip()
    return commit + (" (with uncommitted changes)" if dirty else "")
  except OSError:
    return "unknown"


def _timed(fn, block) -> float:
  t0 = time.perf_counter()
  block(fn())
  return time.perf_counter() - t0


def measure_peak(dtype: str, n: int) -> float:
  """FLOP/s of an n x n matmul in `dtype` (fp32 at precision HIGHEST)."""
  import jax
  import jax.numpy as jnp
  dt = jnp.float32 if dtype == "float32" else jnp.bfloat16
  prec = jax.lax.Precision.HIGHEST if dtype == "float32" else jax.lax.Precision.DEFAULT
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), dt)
  b = jax.random.normal(jax.random.PRNGKey(1), (n, n), dt)
  mm = jax.jit(lambda a, b: jnp.dot(a, b, precision=prec))
  jax.block_until_ready(mm(a, b))
  best = min(_timed(lambda: mm(a, b), jax.block_until_ready) for _ in range(10))
  return 2 * n ** 3 / best


def write_results(out: str | None, default_name: str, text: str, record: dict) -> str:
  """Writes the markdown `text` to `out` (default benchmarks/results/<default_name>.md) and
  `record` beside it as .json; prints the table. -> the markdown path."""
  out = out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", default_name + ".md")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, "w") as f:
    f.write(text)
  with open(os.path.splitext(out)[0] + ".json", "w") as f:
    json.dump(record, f, indent=1)
  print(text)
  print(f"wrote {out}")
  return out
