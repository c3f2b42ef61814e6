"""One package per study (mmneuron, miner, readouts, compare), each with `run(config, workdir)`;
`run` here dispatches on `config.task`; helpers several studies share live in `common/`.

Every run holds the run directory's lock (io/run_lock.py), keeps its config as
configs/<time>.json, and has its config validated (common/validate.py) before any data or model
work; config.json is written once the task accepts the run (io/run_dir.py).
"""
import importlib

from mmneuron_jax.errors import UserError

TASKS = {"mmneuron": "mmneuron_jax.tasks.mmneuron"}
TASKS["mmneuron_compare"] = "mmneuron_jax.tasks.compare.side_by_side"
TASKS["miner"] = "mmneuron_jax.tasks.miner"
TASKS["compare"] = "mmneuron_jax.tasks.compare"
TASKS["readouts"] = "mmneuron_jax.tasks.readouts"
TASKS["train_demo"] = "mmneuron_jax.tasks.train_demo"
TASKS["train_demo_miner"] = "mmneuron_jax.tasks.train_demo.miner_training"
TASKS["atlas"] = "mmneuron_jax.tasks.atlas"


def run(config, workdir: str):
  from mmneuron_jax.io import run_dir, run_lock
  from mmneuron_jax.tasks.common import validate
  if config.get("task") not in TASKS:
    raise UserError(f"config.task={config.get('task')!r}; known tasks: {sorted(TASKS)}")
  with run_lock.locked(workdir):
    run_dir.record_attempt(config, workdir)
    validate.check(config)
    return importlib.import_module(TASKS[config.task]).run(config, workdir)
