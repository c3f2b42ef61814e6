"""The bundled trained MINER demos (mmneuron_jax/data/synthetic/demo_assets/trained_qwen2_vl, trained_qwen2_audio):
HF transformers loads the Qwen2-VL one and its logits and probe-module activations match ours (trained
weights exercise value ranges random ones do not); both keep the held-out greedy answers they were
bundled with (mean primary metric >= 0.6); the recipe rebuilds the bundle's tokenizer and processor files bit for
bit (and its model shape) and trains deterministically; and the MINER pipeline on the trained Qwen2-VL
keeps the pinned sign of the modality-specific-vs-random deactivation effect. Fixed seeds.

Tolerances: logits and activations max-abs <= 1e-4 (fp32); greedy answers exactly as recorded."""
import json
import os

import numpy as np
import pytest
import torch

import hf_hooks
import mmneuron_jax
from mmneuron_jax.tasks.miner import inputs as miner_inputs
from mmneuron_jax.tasks.train_demo import cache, miner_training, recipes

TOL = 1e-4
FAMILIES = ("qwen2_vl", "qwen2_audio")
N_PINNED = 4  # held-out samples per dataset whose greedy answers are re-checked here (the first ones)


def bundle(family):
  path = cache.bundled_path(family)
  result = cache.read_result(path)
  assert result is not None, f"{path}: no bundled trained demo (mmneuron_jax/configs/train_demo_{family}.py writes it)"
  assert result["digest"] == recipes.digest(recipes.recipe(family)), f"{path}: trained with another recipe"
  return path, result


@pytest.fixture(scope="module")
def vl():
  path, result = bundle("qwen2_vl")
  model = mmneuron_jax.load_hf(path)
  return path, result, model, miner_inputs.family_inputs("qwen2_vl", path, miner_training.OPTIONS)


def test_hf_loads_the_trained_qwen2_vl_and_logits_and_probes_match(vl):
  import transformers
  path, _, model, inputs = vl
  val = miner_training.split_samples(recipes.recipe("qwen2_vl"), "val")
  tok = transformers.AutoTokenizer.from_pretrained(path)
  assert tok(val["text_mc"][0].prompt)["input_ids"] == inputs.tokenizer(val["text_mc"][0].prompt)["input_ids"]
  hf = transformers.Qwen2VLForConditionalGeneration.from_pretrained(path, attn_implementation="eager",
                                                                    dtype=torch.float32).eval()
  modules = {"llm": [layer.mlp.act_fn for layer in hf.model.language_model.layers],
             "vision": [block.mlp.act for block in hf.model.visual.blocks]}
  # images with a text-only row; then videos (HF runs the vision tower once per kind: one kind a batch)
  for samples in (val["image_qa"][:2] + val["text_mc"][:1], val["video_qa"][:2]):
    batch = inputs.batch(samples, "right")
    ref, rec = hf_hooks.run_hf(hf, modules, batch)
    out = model.apply(model.params, batch, capture=("llm", "vision"))
    valid = batch["attention_mask"].astype(bool)
    ref_logits = ref.logits.numpy()
    assert np.abs(np.asarray(out.logits)[valid] - ref_logits[valid]).max() <= TOL
    assert np.abs(ref_logits[valid]).max() > 5.0  # trained logits are far from a random model's
    assert np.abs(np.asarray(out.aux["llm"])[:, valid] - rec["llm"][:, valid]).max() <= TOL
    vision = np.asarray(out.aux["vision"])[:, 0]
    assert vision.shape == rec["vision"].shape
    assert np.abs(vision - rec["vision"]).max() <= TOL


@pytest.mark.parametrize("family", FAMILIES)
def test_heldout_answers_are_pinned(family):
  path, result = bundle(family)
  r = recipes.recipe(family)
  assert result["heldout_mean"] >= 0.6
  assert result["heldout_mean"] == pytest.approx(np.mean(list(result["heldout_primary"].values())), abs=1e-12)
  model = mmneuron_jax.load_hf(path)
  inputs = miner_inputs.family_inputs(family, path, miner_training.OPTIONS)
  val = {d: v[:N_PINNED] for d, v in miner_training.split_samples(r, "val").items()}
  per, answers = miner_training.accuracy(model, model.params, inputs, r, val)
  for d in r["datasets"]:
    assert answers[d] == result["heldout_answers"][d][:N_PINNED], d


def test_recipe_rebuilds_the_bundle_and_trains_deterministically(tmp_path):
  """The recipe's untrained build writes the bundle's tokenizer, processor and config bit for bit (same
  data, same vocabulary), the answer weights mark exactly the answer + <|im_end|> tokens, and two short
  runs of a small recipe write the same weights."""
  r = recipes.recipe("qwen2_audio")  # the cheaper data to regenerate; the Qwen2-VL build shares the code
  path, _ = bundle("qwen2_audio")
  miner_training.build(r, str(tmp_path / "untrained"))
  for name in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"):
    with open(tmp_path / "untrained" / name, "rb") as f, open(os.path.join(path, name), "rb") as g:
      assert f.read() == g.read(), name
  # config.json is rewritten from the loaded config after training: the same model, in HF's spelling
  built, bundled = (json.load(open(os.path.join(p, "config.json"))) for p in (tmp_path / "untrained", path))
  for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers"):
    assert built["text_config"][key] == bundled["text_config"][key], key
  small = recipes.recipe("qwen2_audio", n_train_per_dataset=4, n_val_per_dataset=1, steps=3, batch_size=4, warmup=1,
                         layers=1, intermediate=32)
  runs = [miner_training.train(small, str(tmp_path / f"run{k}"), evaluate=False) for k in range(2)]
  assert runs[0]["weights_sha256"] == runs[1]["weights_sha256"] and runs[0]["losses"] == runs[1]["losses"]
  assert runs[0]["losses"][-1] < runs[0]["losses"][0]
  inputs = miner_inputs.family_inputs("qwen2_audio", str(tmp_path / "run0"), miner_training.OPTIONS)
  train = miner_training.split_samples(small, "train")
  batches = miner_training.make_batches(inputs, small, train)
  im_end = inputs.im_end_id
  order = np.random.default_rng([small["seed"], 1])
  for batch, (name, samples) in zip(batches, train.items()):
    rows = order.permutation(len(samples))
    for i, k in enumerate(rows):
      marked = np.nonzero(batch["weights"][i])[0]
      want = inputs.tokenizer(samples[k].answers[0], add_special_tokens=False)["input_ids"] + [im_end]
      assert list(batch["targets"][i, marked]) == want, (name, i)


def test_msn_vs_random_deactivation_is_pinned(tmp_path):
  """MINER on the trained Qwen2-VL with its demo config (held-out split, 24 samples per dataset scored,
  ratio 0.02 of 4 x 256 neurons, LA_MU), each modality's set / random neurons (as many per layer as all
  sets) switched off while answering the first 8 samples per dataset. The gradient score is skipped: its
  selection weight is 0 in this config, so the sets are those of the demo run.

  Observed and pinned (mean primary drop over each modality's benchmarks, own set / random): text 0 / 0,
  video 0 / 0, image -0.0425 / +0.020 (its own set off makes image_qa one answer better and captions a
  little worse; random makes captions a little worse). The trained tiny model is robust to it: the MINER
  effect does not appear at 2% on this demo (README, Demos); a change that moves these numbers by more
  than one answer per benchmark fails here."""
  from mmneuron_jax import tasks
  from mmneuron_jax.configs import miner_qwen2_vl_demo
  c = miner_qwen2_vl_demo.get_config()
  c.stages = ("scores", "select", "deactivate")
  c.scores.grad = False
  c.deactivate.n_per_dataset = 8
  c.deactivate.conditions = ("none", "image", "video", "text", "random")
  tasks.run(c, str(tmp_path / "run"))
  results = json.load(open(tmp_path / "run" / "miner_results.json"))
  assert results["K"] == 20 and results["modalities"] == ["text", "special", "image", "video"]
  effects = {e["modality"]: e for e in results["modality_effects"]}
  assert set(effects) == {"text", "image", "video"}
  pinned = {"text": (0.0, 0.0), "image": (-0.0425, 0.02), "video": (0.0, 0.0)}
  for m, e in effects.items():
    tol = 1 / 8 / len(e["benchmarks"]) + 1e-9  # one answer of one benchmark
    assert e["own_drop"] == pytest.approx(pinned[m][0], abs=tol), m
    assert e["random_drop"] == pytest.approx(pinned[m][1], abs=tol), m
  own = np.mean([e["own_drop"] for e in effects.values()])
  rand = np.mean([e["random_drop"] for e in effects.values()])
  assert own <= rand  # the pinned sign: here the own sets hurt their modality no more than random ones
