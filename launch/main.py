"""Launch an experiment: `python launch/main.py --config=configs/<name>.py --workdir=runs/<name>`.

Flags, config, (multi-host) setup, then one call into `mmneuron_jax.tasks`.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # for `configs.*` imports

from absl import app, flags, logging
from ml_collections import config_flags

from mmneuron_jax import tasks

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory: config, statistics, neuron sets, report.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  report = tasks.run(_CONFIG.value, _WORKDIR.value)
  logging.info("report: %s", report)


if __name__ == "__main__":
  app.run(main)
