"""mmneuron_jax: domain- and modality-specific neurons of multimodal LLMs, in JAX."""
from setuptools import find_packages, setup

setup(
    name="mmneuron_jax",
    version="0.1.0",
    description=__doc__,
    python_requires=">=3.10",
    packages=find_packages(include=["mmneuron_jax", "mmneuron_jax.*"]),
    package_data={"mmneuron_jax": ["data/synthetic/demo_assets/*", "data/synthetic/demo_assets/*/*",
                                   "data/synthetic/demo_assets/*/*/*"]},
    install_requires=[
        "jax>=0.4.35",
        "flax>=0.10.0",
        "optax>=0.2.3",
        "orbax-checkpoint>=0.6.0",
        "tensorstore>=0.1.60",
        "ml-collections>=0.1.1",
        "absl-py>=2.0",
        "numpy>=1.26",
        "safetensors>=0.4",
        "transformers>=4.45",
        "pillow>=10.0",
        "matplotlib>=3.8",
        "pandas>=2.0",
        "pyarrow>=15",
    ],
    extras_require={
        "test": ["torch==2.13.0", "pytest>=8.0", "selenium>=4.10"],
    },
)
