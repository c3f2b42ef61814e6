"""What makes the package pleasant in a notebook: progress (io/progress.py: the rate and ETA leave out
the first, compiling step; outside absl.app a tqdm bar with the same numbers, under it log lines), plots
as Figure objects with no global matplotlib state, and quiet library logs (io/logs.py)."""
import logging
import os

import numpy as np
from absl import flags
from absl import logging as absl_logging

from mmneuron_jax.io import progress
from mmneuron_jax.io.progress import Progress


def test_first_eta_excludes_the_compile_step():
  now, lines = [0.0], []
  p = Progress(total=12, desc="stats", every_s=0.0, log=lines.append, clock=lambda: now[0])
  now[0] = 30.0  # the first step compiles: 30 s
  p.update(2)
  assert lines[-1] == "stats: 2/12 (16.7%), ? it/s, elapsed 0:00:30, eta ?"
  now[0] = 31.0  # then 2 items per second
  p.update(2)
  # 2 items in the 1 s after the first step: 2 it/s, 8 left -> 4 s (with compile time it would read 8 * 31 / 4)
  assert lines[-1] == "stats: 4/12 (33.3%), 2 it/s, elapsed 0:00:31, eta 0:00:04"
  p.close()
  assert lines[-1] == "stats: 4/12 (33.3%), 2 it/s, elapsed 0:00:31, eta 0:00:04 (done)"


def test_single_update_closes_with_the_overall_rate():
  now, lines = [0.0], []
  p = Progress(total=4, desc="x", log=lines.append, clock=lambda: now[0])
  now[0] = 2.0
  p.update(4)
  p.close()
  assert lines == ["x: 4/4 (100.0%), 2 it/s, elapsed 0:00:02, eta 0:00:00 (done)"]


def test_bar_outside_absl_app_and_log_lines_under_it(capsys, monkeypatch):
  assert not flags.FLAGS.is_parsed() or progress.under_absl_app()
  monkeypatch.setattr(progress, "under_absl_app", lambda: False)
  now = [0.0]
  p = Progress(total=10, desc="bar", clock=lambda: now[0])
  for _ in range(5):
    now[0] += 1.0
    p.update(2)
  p.close()
  err = capsys.readouterr().err
  assert "bar: 100%" in err and "10/10" in err and "2 it/s" in err and "(done)" in err
  monkeypatch.setattr(progress, "under_absl_app", lambda: True)
  logged = []
  monkeypatch.setattr(progress, "default_log", logged.append)
  q = Progress(total=2, desc="log", every_s=0.0, clock=lambda: now[0])
  q.update(2)
  q.close()
  assert q._bar is None and logged[-1].startswith("log: 2/2 (100.0%)")


def test_no_module_touches_global_matplotlib_state():
  """Plots are `matplotlib.figure.Figure` objects: no pyplot, no backend switch, in any module."""
  import pathlib
  import re
  import mmneuron_jax
  bad = [f"{p}:{n}" for p in sorted(pathlib.Path(mmneuron_jax.__file__).parent.rglob("*.py"))
         for n, line in enumerate(p.read_text().splitlines(), 1)
         if re.search(r"matplotlib\.use\(|import matplotlib\.pyplot|from matplotlib import pyplot|\bplt\.", line)]
  assert not bad, bad


def test_quiet_logs_drop_orbax_info_and_keep_ours(tmp_path, caplog):
  import mmneuron_jax  # noqa: F401  (quiet() runs on import)
  from mmneuron_jax.io import logs
  from mmneuron_jax.io.checkpoint import restore_params, save_params
  assert os.environ.get("TRANSFORMERS_NO_ADVISORY_WARNINGS") == "1"
  old = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.INFO)
  try:
    with caplog.at_level(logging.INFO, logger="absl"):
      save_params(str(tmp_path / "ck"), {"a": np.ones(3, np.float32)}, {"x": 1})
      restore_params(str(tmp_path / "ck"))
      absl_logging.info("ours")
    files = {os.path.basename(r.pathname) for r in caplog.records}
    assert [r.getMessage() for r in caplog.records] == ["ours"], files
    logs.quiet(False)  # the chatter comes back when asked for
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="absl"):
      save_params(str(tmp_path / "ck2"), {"a": np.ones(3, np.float32)}, {"x": 1})
    assert any("orbax" in r.pathname for r in caplog.records)
  finally:
    logs.quiet()
    absl_logging.set_verbosity(old)
