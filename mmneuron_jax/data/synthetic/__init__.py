"""Synthetic data and tiny demo checkpoints. A family's demo-checkpoint writer is
`data/synthetic/demo_<family>.py`, found by name; it exports `build_demo_checkpoint(path, texts,
seed=0) -> path` (a HF checkpoint directory: config.json, safetensors, tokenizer, processor)."""
import importlib
import types


def demo_writer(name: str) -> types.ModuleType:
  """The demo-checkpoint module `mmneuron_jax.data.synthetic.demo_<name>` of a model family."""
  return importlib.import_module(f"mmneuron_jax.data.synthetic.demo_{name}")
