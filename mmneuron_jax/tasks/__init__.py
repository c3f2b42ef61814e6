"""One package per study (mmneuron, miner, readouts, compare), each with `run(config, workdir)`;
`run` here dispatches on `config.task`; helpers several studies share live in `common/`.

Every run holds the run directory's lock (io/run_lock.py), keeps its config as
configs/<time>.json, and has its config validated (common/validate.py) before any data or model
work; config.json is written once the task accepts the run (io/run_dir.py).
"""
import importlib

from mmneuron_jax.errors import UserError
from mmneuron_jax.io import kvstore, paths

TASKS = {"mmneuron": "mmneuron_jax.tasks.mmneuron"}
TASKS["mmneuron_compare"] = "mmneuron_jax.tasks.compare.side_by_side"
TASKS["miner"] = "mmneuron_jax.tasks.miner"
TASKS["compare"] = "mmneuron_jax.tasks.compare"
TASKS["readouts"] = "mmneuron_jax.tasks.readouts"
TASKS["train_demo"] = "mmneuron_jax.tasks.train_demo"
TASKS["train_demo_miner"] = "mmneuron_jax.tasks.train_demo.miner_training"
TASKS["atlas"] = "mmneuron_jax.tasks.atlas"

# The studies (and MMNeuron stages) whose every workdir file goes through io/paths.py, so that a URL
# --workdir (gs://, file://, memory://) works; the others refuse one rather than write a local
# directory named like the URL.
URL_TASKS = {"mmneuron", "mmneuron_compare", "compare", "miner", "readouts"}
URL_STAGES_NOT_YET = ("atlas", "tuned_lens")


def check_url_workdir(config, workdir: str) -> None:
  """UserError when `config` runs something that needs a local run directory, or when no
  filesystem serves the URL."""
  if config.task not in URL_TASKS:
    raise UserError(f"--workdir={workdir}: task {config.task!r} needs a local run directory (URL run directories "
                    f"work for tasks {sorted(URL_TASKS)}); use a local --workdir")
  stages = [s for s in tuple(config.get("stages") or ()) if s in URL_STAGES_NOT_YET]
  if stages:
    raise UserError(f"--workdir={workdir}: config.stages {stages} need a local run directory; use a local "
                    "--workdir or leave these stages out")
  paths.check_url(workdir)
  try:
    kvstore.open_dir(workdir)
  except ValueError as e:
    raise UserError(f"--workdir={workdir}: tensorstore has no kvstore driver for this URL, so the statistics "
                    f"store cannot live there ({str(e).splitlines()[0]})") from None


def run(config, workdir: str):
  from mmneuron_jax.io import run_dir, run_lock
  from mmneuron_jax.tasks.common import validate
  if config.get("task") not in TASKS:
    raise UserError(f"config.task={config.get('task')!r}; known tasks: {sorted(TASKS)}")
  if paths.is_url(workdir):
    check_url_workdir(config, workdir)
  with run_lock.locked(workdir):
    run_dir.record_attempt(config, workdir)
    validate.check(config)
    return importlib.import_module(TASKS[config.task]).run(config, workdir)
