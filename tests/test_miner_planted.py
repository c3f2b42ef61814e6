"""Planted ground truth: MINER's stages 1-4, run through the task on a tiny Qwen2-VL whose LLM has
modality-specific neurons by construction (`data/synthetic/planted_qwen2_vl.py`), recover exactly the planted
(modality, layer, neuron) triples: precision and recall >= 0.95 (observed 1.0) for LA_MU, LU_MA and
uniform, with the budget K equal to the number of planted neurons."""
import json
import os

import numpy as np
import pytest

from mmneuron_jax.configs import miner_qwen2_vl_demo
from mmneuron_jax import tasks
from mmneuron_jax.analysis.neuron_sets import NeuronSet
from mmneuron_jax.data.synthetic import demo_qwen2_vl as demo_model_qwen2_vl, miner_demo, planted_qwen2_vl

PER_LAYER = 4
LAYERS, WIDTH = 3, 128
NAMES = ["text", "special", "image"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("planted")
  datasets = ["image_qa", "text_mc"]
  samples = [s for d in datasets for s in miner_demo.demo_dataset(d, 4)]
  path = demo_model_qwen2_vl.build_demo_checkpoint(str(root / "ckpt"), miner_demo.texts(samples),
                                                   edit_state=planted_qwen2_vl.edit_state_fn(PER_LAYER))
  c = miner_qwen2_vl_demo.get_config()
  c.model.path = path
  c.data.source = "demo"
  c.stages = ("scores", "select")
  c.data.datasets = datasets
  c.data.n_per_dataset = 4
  c.scores.grad = False
  c.select.ratio = len(NAMES) * PER_LAYER * LAYERS / (LAYERS * WIDTH)  # K = 36 = planted neurons
  tasks.run(c, str(root / "run"))
  return str(root / "run")


def precision_recall(selected, planted):
  hit = np.logical_and(selected, planted).sum()
  return hit / max(selected.sum(), 1), hit / planted.sum()


@pytest.mark.parametrize("strategy", ["LA_MU", "LU_MA", "uniform"])
def test_planted_modality_neurons_recovered(run_dir, strategy):
  results = json.load(open(os.path.join(run_dir, "miner_results.json")))
  assert results["modalities"] == NAMES and results["K"] == len(NAMES) * PER_LAYER * LAYERS
  planted = planted_qwen2_vl.planted_mask(NAMES, LAYERS, WIDTH, PER_LAYER)
  selected = NeuronSet.load(os.path.join(run_dir, "neurons", "strategies", f"llm_{strategy}.json")).mask
  precision, recall = precision_recall(selected, planted)
  assert precision >= 0.95 and recall >= 0.95, (strategy, precision, recall)


def test_planted_scores_separate(run_dir):
  """The planted neurons of each modality top its combined score in every layer by a clear margin."""
  with np.load(os.path.join(run_dir, "scores.npz")) as z:
    combined = z["combined"]                                   # [M, L, F]
  planted = planted_qwen2_vl.planted_mask(NAMES, LAYERS, WIDTH, PER_LAYER)
  for m in range(len(NAMES)):
    for l in range(LAYERS):
      assert combined[m, l][planted[m, l]].min() > combined[m, l][~planted[m, l]].max() + 0.2, (NAMES[m], l)
