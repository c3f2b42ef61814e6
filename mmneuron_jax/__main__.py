"""`python -m mmneuron_jax --config=<name or path> --workdir=<dir>` (mmneuron_jax/cli.py; `--help` lists the configs)."""
import sys

from mmneuron_jax.cli import main

if __name__ == "__main__":
  sys.exit(main())
