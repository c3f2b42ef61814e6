"""Launch an experiment from a checkout: `python launch/main.py --config=<name or path> --workdir=runs/<name>`.

The same command line as `mmneuron` / `python -m mmneuron_jax` (mmneuron_jax/cli.py; `--help` lists the configs).
"""
import sys

from mmneuron_jax.cli import main

if __name__ == "__main__":
  sys.exit(main())
