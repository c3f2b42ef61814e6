"""The MINER pipeline on Qwen2.5-VL unchanged: `miner_qwen2_5_vl_demo` (the untrained Qwen2-VL demo
study with `model.family` switched) runs scores, selection and deactivation end to end on the tiny demo
checkpoint, on the demo's video questions (second_per_grid_ts from the sampled frames; images: the parity
test)."""
import json
import os

import numpy as np

from mmneuron_jax import tasks
from mmneuron_jax.analysis.neuron_sets import NeuronSet
from mmneuron_jax.configs import miner_qwen2_5_vl_demo, miner_qwen2_5_vl_7b, miner_qwen2_vl_7b, miner_qwen2_vl_demo
from mmneuron_jax.data.synthetic import miner_demo
from mmneuron_jax.tasks.miner import inputs as miner_inputs


def test_family_switch_is_one_field():
  # the demo: Qwen2-VL's untrained demo setting (no trained Qwen2.5-VL is bundled)
  for a, b in ((miner_qwen2_5_vl_demo.get_config(), miner_qwen2_vl_demo.random_demo(miner_qwen2_vl_demo.get_config())),
               (miner_qwen2_5_vl_7b.get_config(), miner_qwen2_vl_7b.get_config())):
    assert {k for k in a if a[k] != b[k]} == {"model"}
    assert {f for f in a.model if a.model[f] != b.model[f]} == {"family", "id"}


def test_demo_runs_end_to_end(tmp_path):
  c = miner_qwen2_5_vl_demo.get_config()
  c.stages = ("scores", "select", "deactivate")
  c.data.datasets = ("video_qa",)  # video (second_per_grid_ts); each dataset's shapes compile their own passes
  c.data.n_per_dataset = 2
  c.scores.batch_size = 2
  c.scores.grad = False
  c.scores.snapshots = ()
  c.deactivate.n_per_dataset = 1
  c.deactivate.max_new_tokens = 2
  c.deactivate.conditions = ("none", "video")
  workdir = str(tmp_path / "run")
  tasks.run(c, workdir)
  results = json.load(open(os.path.join(workdir, "miner_results.json")))
  assert results["family"] == "qwen2_5_vl"
  assert set(results["modalities"]) >= {"text", "special", "video"}
  inputs = miner_inputs.family_inputs("qwen2_5_vl", os.path.join(workdir, "demo_checkpoint"))
  batch = inputs.batch(miner_demo.demo_dataset("video_qa", 2), "right")
  assert batch["second_per_grid_ts"].tolist() == [2.0, 2.0]  # 2 frames per temporal patch at 1 fps
  n_video = int((np.isin(batch["input_ids"], inputs.token_ids()["video"]) & batch["attention_mask"].astype(bool)).sum())
  assert results["datasets"]["video_qa"]["tokens"]["video"] == n_video > 0
  sets = NeuronSet.load(os.path.join(workdir, "neurons", "llm.json"))
  assert set(sets.group_names) == set(results["modalities"]) and sum(sets.sizes().values()) > 0
  assert os.path.exists(os.path.join(workdir, "deactivation.json")) or any("deactiv" in f for f in os.listdir(workdir))
