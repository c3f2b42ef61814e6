"""Launch an experiment: `python launch/main.py --config=configs/<name>.py --workdir=runs/<name>`.

Flags, config, (multi-host) setup, then one call into `mmneuron_jax.tasks`.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # for `configs.*` imports

from absl import app, flags, logging
from ml_collections import config_flags

from mmneuron_jax import distributed, tasks
from mmneuron_jax.errors import UserError
from mmneuron_jax.io import run_dir

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory: config, statistics, neuron sets, report.")
flags.mark_flags_as_required(["config", "workdir"])
# Multi-host (TPU pod, GPU nodes): flags win over MMNEURON_* / JAX_* env (mmneuron_jax/distributed.py).
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-host only).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (multi-host only).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (multi-host only).")


def load_config():
  """The --config ConfigDict; UserError naming the file when it cannot be loaded."""
  try:
    config = _CONFIG.value
    config.get("task")  # a config file that failed to load raises here (ml_collections defers the error)
    return config
  except (OSError, ImportError, SyntaxError, AttributeError) as e:
    name = flags.FLAGS["config"].config_filename
    if isinstance(e, OSError) and not os.path.exists(name.split(":", 1)[0]):
      raise UserError(f"--config={name}: no such file") from None
    raise UserError(f"--config={name}: cannot be loaded ({str(e).splitlines()[-1].strip()})") from None


def main(argv):
  """Runs the task; a UserError is printed as one block (no traceback) with exit status 2, Ctrl-C
  says where progress was committed (exit status 130); other errors keep their traceback."""
  try:
    run(argv)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except KeyboardInterrupt:
    lines = run_dir.progress_lines(_WORKDIR.value)
    print("interrupted. " + ("Progress committed: " + "; ".join(lines) if lines else "No statistics were committed")
          + ". Rerun the same command to resume.", file=sys.stderr)
    sys.exit(130)


def run(argv):
  del argv
  config = load_config()
  logging.set_verbosity(logging.INFO)
  index, count = distributed.initialize_from_env(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  logging.info("process %d of %d", index, count)
  # Every process runs the same steps on the global mesh; only process 0 writes the run directory.
  workdir = _WORKDIR.value if index == 0 else os.path.join(_WORKDIR.value, f".process_{index}")
  report = tasks.run(config, workdir)
  logging.info("report: %s", report)


if __name__ == "__main__":
  app.run(main)
