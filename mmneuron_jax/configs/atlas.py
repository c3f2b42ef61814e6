"""The neuron atlas of a finished MMNeuron run: per selected neuron (neurons/<module>.json) and
domain, the top-k activating tokens in context, histograms, logit lens and switch-off effect, as
a static site <run_dir>/atlas/index.html (open it from the file system). Seconds on the demo run.

COMMAND: python -m mmneuron_jax --config=atlas --workdir=runs/llava_next_demo

`--workdir` is the finished run (or set `--config.run_dir=...` and any workdir). The same as a stage
of the study: add 'atlas' to `stages` of an MMNeuron config.
"""
import ml_collections

from mmneuron_jax.configs.mmneuron_base import apply_arg


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.task = "atlas"
  c.run_dir = ""  # '' = the workdir
  # k: top examples per neuron and domain; max_samples_per_domain 0 = the run's statistics records;
  # batch_size 0 = the run's stats.batch_size; max_neurons 0 = the whole sets (per module);
  # effect_n_per_domain: held-out records per domain for the switch-off effect (0 = skip).
  c.atlas = ml_collections.ConfigDict(dict(k=8, max_samples_per_domain=0, batch_size=0, max_neurons=0,
                                           effect_n_per_domain=4, commit_every=10, prefetch=2, lens_top=8))
  return apply_arg(c, arg)
