"""One package per study (mmneuron, miner, readouts, compare), each with `run(config, workdir)`;
`run` here dispatches on `config.task`; helpers several studies share live in `common/`."""
import importlib

TASKS = {"mmneuron": "mmneuron_jax.tasks.mmneuron"}
TASKS["mmneuron_compare"] = "mmneuron_jax.tasks.compare.side_by_side"
TASKS["miner"] = "mmneuron_jax.tasks.miner"
TASKS["compare"] = "mmneuron_jax.tasks.compare"
TASKS["readouts"] = "mmneuron_jax.tasks.readouts"
TASKS["train_demo"] = "mmneuron_jax.tasks.train_demo"
TASKS["atlas"] = "mmneuron_jax.tasks.atlas"


def run(config, workdir: str):
  if config.task not in TASKS:
    raise ValueError(f"config.task={config.task!r}; known tasks: {sorted(TASKS)}")
  return importlib.import_module(TASKS[config.task]).run(config, workdir)
