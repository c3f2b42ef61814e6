"""Every experiment config loads, and every field can be overridden from the command line
(`--config.a.b=...`): ml_collections' flags refuse list fields, so sequences are tuples."""
import glob
import importlib
import os

import ml_collections
import pytest

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mmneuron_jax", "configs")
CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(CONFIG_DIR, "*.py"))
                 if not os.path.basename(p).startswith("_"))


def leaves(node, prefix=""):
  for key, value in node.items():
    if isinstance(value, ml_collections.ConfigDict):
      yield from leaves(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


@pytest.mark.parametrize("name", CONFIGS)
def test_config_fields_are_overridable(name):
  module = importlib.import_module(f"mmneuron_jax.configs.{name}")
  config = module.get_config()
  lists = [key for key, value in leaves(config) if isinstance(value, list)]
  assert not lists, f"mmneuron_jax/configs/{name}.py: list fields cannot be set with --config.<field>; make them tuples: {lists}"
  if "COMMAND" not in (module.__doc__ or "") and name not in ("mmneuron_base", "miner_base"):
    pytest.fail(f"mmneuron_jax/configs/{name}.py: the docstring must hold the exact COMMAND")


def test_commands_name_packaged_configs():
  """Every docstring COMMAND runs the CLI on a config that `--config=<name>` resolves to its own file."""
  from mmneuron_jax import cli
  assert set(cli.available_configs()) == set(CONFIGS) - {"mmneuron_base", "miner_base"}
  for name in cli.available_configs():
    doc = importlib.import_module(f"mmneuron_jax.configs.{name}").__doc__
    command = doc.split("COMMAND:")[1].split("\n")[0]
    assert command.strip().startswith("python -m mmneuron_jax --config="), (name, command)
    value = command.split("--config=")[1].split()[0]
    resolved = cli.resolve_config(value)
    assert resolved.split(":")[0] == os.path.join(CONFIG_DIR, f"{value.split(':')[0]}.py"), (name, resolved)
