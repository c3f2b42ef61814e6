"""The same MINER config on the audio family: `model.family = 'qwen2_audio'` (tiny demo Qwen2-Audio,
synthetic tone questions + text-only questions) runs stages 1-4 with the audio span as a modality."""
import json
import os

import numpy as np

from mmneuron_jax.configs import miner_qwen2_audio_demo, miner_qwen2_vl_demo
from mmneuron_jax import tasks
from mmneuron_jax.analysis.neuron_sets import NeuronSet
from mmneuron_jax.data.synthetic import miner_demo
from mmneuron_jax.io.stats_store import StatsStore
from mmneuron_jax.tasks.miner import inputs as miner_inputs


def test_family_switch_is_one_field():
  vl, audio = miner_qwen2_vl_demo.get_config(), miner_qwen2_audio_demo.get_config()
  differ = {k for k in ("model", "scores", "select") for f in vl[k] if vl[k][f] != audio[k][f]}
  assert differ == {"model"} and {f for f in vl.model if vl.model[f] != audio.model[f]} == {"family", "id"}


def test_audio_demo_stages_1_to_4(tmp_path):
  c = miner_qwen2_vl_demo.random_demo(miner_qwen2_audio_demo.get_config())
  c.stages = ("scores", "select")
  c.data.n_per_dataset = 2
  c.scores.batch_size = 2
  c.scores.grad = True  # the sixth score (beyond the paper), one backward pass per sample
  workdir = str(tmp_path / "run")
  tasks.run(c, workdir)
  results = json.load(open(os.path.join(workdir, "miner_results.json")))
  assert results["family"] == "qwen2_audio" and results["modalities"] == ["text", "special", "audio"]
  # Stage 1 against the token ids of a batch built here: the whole expanded <|AUDIO|> span counts.
  inputs = miner_inputs.family_inputs("qwen2_audio", os.path.join(workdir, "demo_checkpoint"))
  ids = inputs.token_ids()
  batch = inputs.batch(miner_demo.demo_dataset("audio_qa", 2), "right")
  valid = batch["attention_mask"].astype(bool)
  n_audio = int((np.isin(batch["input_ids"], ids["audio"]) & valid).sum())
  n_special = int((np.isin(batch["input_ids"], ids["special"]) & valid).sum())
  assert n_audio > 2 * 10  # the span, not one placeholder per audio
  stats = results["datasets"]["audio_qa"]
  assert stats["tokens"] == {"text": int(valid.sum()) - n_audio - n_special, "special": n_special, "audio": n_audio}
  assert results["datasets"]["text_mc"]["present"]["audio"] == 0
  store = os.path.join(workdir, "stats", "text_mc")
  grad = StatsStore(store, json.load(open(os.path.join(store, "state.json")))).totals()["grad_sum"]  # [M, L, F]
  assert not grad[2].any() and grad[:2].max() <= 2.0 and grad[:2].min() >= 0.0  # 2 samples in [0, 1]; no audio
  assert (grad[:2].max(-1) >= 1.0 - 1e-6).all()  # each sample's normalised score reaches 1 in every layer
  with np.load(os.path.join(workdir, "scores.npz")) as z:
    assert z["aggregated_grad"].shape == (3, 3, 128)
  sets = NeuronSet.load(os.path.join(workdir, "neurons", "llm.json"))
  assert sets.group_names == ["text", "special", "audio"]
  assert all(n == results["K"] // 3 for n in sets.sizes().values())
