"""mmneuron_jax: domain- and modality-specific neurons of multimodal LLMs, in JAX."""
from mmneuron_jax import convert  # noqa: F401  (the conversion subpackage: reader, rules, checks)
from mmneuron_jax.io import logs as _logs
from mmneuron_jax.api import build_model, convert_checkpoint, load, load_hf
from mmneuron_jax.loading import load_for_config, load_on_mesh
from mmneuron_jax.models.base import Model, Output

_logs.quiet()  # orbax's INFO chatter, transformers' "PyTorch was not found" (io/logs.py; quiet(False) undoes)

__all__ = ["Model", "Output", "build_model", "convert_checkpoint", "load", "load_for_config", "load_hf",
           "load_on_mesh"]
