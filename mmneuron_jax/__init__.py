"""mmneuron_jax: domain- and modality-specific neurons of multimodal LLMs, in JAX."""
import mmneuron_jax.convert  # noqa: F401  (the subpackage first, so `convert` below stays the function)
from mmneuron_jax.api import build_model, convert, load, load_hf
from mmneuron_jax.loading import load_for_config, load_on_mesh
from mmneuron_jax.models.base import Model, Output

__all__ = ["Model", "Output", "build_model", "convert", "load", "load_for_config", "load_hf", "load_on_mesh"]
