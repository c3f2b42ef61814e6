"""The neuron atlas: what each selected neuron responds to, as a static site per run.

    from mmneuron_jax.tasks import atlas
    atlas.build("runs/llava_next_demo")              # -> runs/llava_next_demo/atlas/index.html
    atlas.show("runs/llava_next_demo", "vision.L1.N27")  # one neuron, inline in a notebook cell

Collected by an in-scan top-k probe (`nn/topk_probe.py`) into a resumable StatsStore
(`collect.py`); examples, readouts and the site in `examples.py`, `readouts.py`, `site.py`.
"""
from mmneuron_jax.tasks.atlas.build import build, load_sets, make_atlas, stage
from mmneuron_jax.tasks.atlas.notebook import neuron_html, show
from mmneuron_jax.tasks.atlas.task import run as _run

__all__ = ["build", "load_sets", "make_atlas", "neuron_html", "run", "show", "stage"]


def run(config, workdir: str) -> str:
  """Task 'atlas' (mmneuron_jax/configs/atlas.py): the atlas of the finished run `config.run_dir` (default: workdir)."""
  return _run(config, workdir)
