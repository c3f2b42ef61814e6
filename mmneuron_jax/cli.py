"""The command line: `mmneuron --config=<name or path>[:args] --workdir=<dir>` (also `python -m mmneuron_jax`).

`--config` is a packaged experiment (`mmneuron --help` lists them; `mmneuron_jax/configs/<name>.py`) or
a path to a config file; text after ':' goes to the config's `get_config(arg)`, and
`--config.<field>=<value>` overrides one field. `--config=<name> --show_config` prints every field.
Flags, config, (multi-host) setup, then one call into `mmneuron_jax.tasks`.
"""
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from mmneuron_jax import distributed, tasks
from mmneuron_jax.errors import UserError
from mmneuron_jax.io import paths, run_dir

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment: a packaged config name (see --help) or a config file path; "
    "':<args>' after it goes to get_config(arg); --config.<field>=<value> overrides a field.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory: config, statistics, neuron sets, report.")
_SHOW_CONFIG = flags.DEFINE_bool("show_config", False, "Print the config's fields (after overrides) and exit.")
# Multi-host (TPU pod, GPU nodes): flags win over MMNEURON_* / JAX_* env (mmneuron_jax/distributed.py).
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-host only).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (multi-host only).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (multi-host only).")


def available_configs():
  """Names of the packaged experiment configs (files with a COMMAND; the *_base files are shared defaults)."""
  names = []
  for file in sorted(os.listdir(CONFIG_DIR)):
    if file.endswith(".py") and not file.startswith("_") and not file.endswith("_base.py"):
      names.append(file[:-3])
  return names


def config_summary(name):
  """First line of a packaged config's docstring."""
  with open(os.path.join(CONFIG_DIR, f"{name}.py")) as f:
    text = f.read()
  doc = " ".join((text.split('"""')[1] if text.startswith('"""') else "").split("\n\n")[0].split())
  first = doc.split(". ")[0].rstrip(".")
  return first if len(first) <= 100 else first[:97] + "..."


def resolve_config(value):
  """`name[:args]` -> `<package>/configs/name.py[:args]`; an existing file path is kept as it is."""
  path, sep, arg = value.partition(":")
  if os.path.isfile(path):
    return value
  name = path[:-3] if path.endswith(".py") else path
  if os.sep not in name and "/" not in name and os.path.isfile(os.path.join(CONFIG_DIR, f"{name}.py")):
    return os.path.join(CONFIG_DIR, f"{name}.py") + sep + arg
  raise app.UsageError(f"--config={value}: no such file, and no packaged config of that name; "
                       f"packaged: {', '.join(available_configs())}")


def resolve_argv(argv):
  """argv with every `--config=NAME[:args]` / `--config NAME` turned into the packaged file's path."""
  out, i = [], 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith(("--config=", "-config=")):
      flag, _, value = arg.partition("=")
      out.append(f"{flag}={resolve_config(value)}")
    elif arg in ("--config", "-config") and i + 1 < len(argv):
      out.append(f"--config={resolve_config(argv[i + 1])}")
      i += 1
    else:
      out.append(arg)
    i += 1
  return out


def usage():
  """The --help text: how to run, the packaged configs, and how to see a config's fields."""
  lines = [__doc__.strip(), "", "Packaged configs (--config=<name>):"]
  width = max(len(n) for n in available_configs())
  for name in available_configs():
    lines.append(f"  {name:<{width}}  {config_summary(name)}")
  lines += ["", "A config's fields: mmneuron --config=<name> --show_config   (any --config.<field>=... applies)",
            "Example: mmneuron --config=llava_next_demo --workdir=runs/llava_next_demo", "",
            "Flags:", flags.FLAGS.module_help(sys.modules[__name__])]
  return "\n".join(lines)


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


def run(argv):
  """Runs the task; a UserError is printed as one block (no traceback) with exit status 2, Ctrl-C
  says where progress was committed (exit status 130); other errors keep their traceback."""
  try:
    run_task(argv)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except KeyboardInterrupt:
    lines = run_dir.progress_lines(_WORKDIR.value)
    where = f" in {_WORKDIR.value}" if _WORKDIR.value else ""
    print("interrupted. " + (f"Progress committed{where}: " + "; ".join(lines) if lines else
                             "No statistics were committed") + ". Rerun the same command to resume.", file=sys.stderr)
    sys.exit(130)


def run_task(argv):
  del argv
  config = load_config()
  if _SHOW_CONFIG.value:
    print(config)
    return
  if not _WORKDIR.value:
    raise app.UsageError("--workdir is required (the run directory)")
  logging.set_verbosity(logging.INFO)
  index, count = distributed.initialize_from_env(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  logging.info("process %d of %d", index, count)
  # Every process runs the same steps on the global mesh; only process 0 writes the run directory.
  workdir = _WORKDIR.value if index == 0 else paths.join(_WORKDIR.value, f".process_{index}")
  report = tasks.run(config, workdir)
  logging.info("report: %s", report)


def main(argv=None):
  """Entry point of `mmneuron`, `python -m mmneuron_jax` and `launch/main.py`."""
  argv = list(sys.argv if argv is None else argv)
  if any(a in ("-h", "--help", "-help", "--helpshort", "-?") for a in argv[1:]):
    print(usage())
    return 0
  if not any(a.startswith(("--config=", "-config=")) or a in ("--config", "-config") for a in argv[1:]):
    print(usage(), file=sys.stderr)
    print("\nmissing --config=<name or path>", file=sys.stderr)
    return 1
  try:
    argv = resolve_argv(argv)
  except app.UsageError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  app.run(run, argv=argv)
  return 0
