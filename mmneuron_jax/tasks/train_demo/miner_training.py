"""Train a tiny MINER demo model (Qwen2-VL, Qwen2-Audio) from its recipe on the learnable MINER set
(data/synthetic/miner_skills.py) and write it as a HF checkpoint; the MINER twin of training.py.

1. the family's demo checkpoint writer (data/synthetic/demo_<family>.py) builds the untrained model
   (vocabulary of the train and validation texts, `layers` x `intermediate` LLM) in `out_dir`;
2. it is loaded through `load_hf` and trained with optax on answer-token cross-entropy (steps.py),
   on the MINER pipeline's own batches (`tasks/miner/inputs.ChatInputs.answer_batch`: chat template,
   answer + <|im_end|> marked): float32, fixed seeds, every batch one dataset's rows at one length,
   so a CPU run is repeatable bit for bit;
3. the trained params are written back under the HF names into the same directory (train_demo.json too);
4. held-out accuracy: greedy answers on the validation split through the MINER deactivation path
   (no neuron off), scored with each dataset's primary metric (`miner_demo.score`).
"""
import dataclasses
import json
import os
import time

import jax
import ml_collections
import numpy as np
from absl import logging

import mmneuron_jax
from mmneuron_jax.data.inputs.batching import chunks, pad_2d, round_up
from mmneuron_jax.data.synthetic import miner_demo, miner_skills
from mmneuron_jax.tasks.miner import deactivation as miner_deactivation, inputs as miner_inputs
from mmneuron_jax.tasks.train_demo import loop, recipes, report
from mmneuron_jax.tasks.train_demo.training import RECIPE_FILE, file_digest

# The processor settings of the MINER demo configs (pixel bounds: the checkpoint's own).
OPTIONS = {"video_frames": "authors"}


def split_samples(r: dict, split: str) -> dict:
  """{dataset: [MinerSample]} of the recipe's `split`."""
  n = r["n_train_per_dataset"] if split == "train" else r["n_val_per_dataset"]
  return {name: miner_skills.skills_dataset(name, n, split, r["data_seed"]) for name in r["datasets"]}


def build(r: dict, out_dir: str) -> str:
  """The untrained demo checkpoint of recipe `r` in `out_dir` (vocabulary of both splits' texts)."""
  texts = miner_demo.texts([s for split in miner_skills.SPLITS for v in split_samples(r, split).values() for s in v])
  return miner_inputs.demo_builder(r["family"])(out_dir, texts, seed=r["model_seed"], layers=r["layers"],
                                                 intermediate=r["intermediate"])


def make_batches(inputs, r: dict, train: dict) -> list:
  """Fixed-shape training batches: each `batch_size` rows of one dataset (rows in a seeded order), token
  arrays right-padded to one length (the longest row rounded up to `length_multiple`), with 'targets'
  int32[B, T-1] and 'weights' float32[B, T-1] (1 where the next token is an answer token or <|im_end|>)."""
  rng = np.random.default_rng([r["seed"], 1])
  raw = []
  for name, samples in train.items():
    if len(samples) % r["batch_size"]:
      raise ValueError(f"recipe n_train_per_dataset={len(samples)} is not a multiple of batch_size="
                       f"{r['batch_size']} (every batch is full: one shape per dataset)")
    for part in chunks(list(rng.permutation(len(samples))), r["batch_size"]):
      chunk = [samples[i] for i in part]
      raw.append(inputs.answer_batch(chunk, [s.answers[0] for s in chunk]))
  length = round_up(max(b["input_ids"].shape[1] for b, _ in raw), r["length_multiple"])
  out = []
  for batch, mask in raw:
    rows = batch["input_ids"].shape[0]
    batch = dict(batch)
    for key in ("input_ids", "attention_mask", "mm_token_type_ids"):
      if batch.get(key) is not None:
        batch[key] = pad_2d(batch[key], rows, length, inputs.pad_id if key == "input_ids" else 0, False)
    mask = pad_2d(mask, rows, length, False, False)
    batch["targets"] = batch["input_ids"][:, 1:].astype(np.int32)
    batch["weights"] = mask[:, 1:].astype(np.float32)
    out.append(batch)
  return out


def eval_config(r: dict, batch_size: int = 8) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(batch_size=batch_size, length_bucket=32, max_new_tokens=r["max_new_tokens"],
                                        temperature=0.0))


def accuracy(model, params, inputs, r: dict, samples: dict) -> tuple:
  """({dataset: mean primary metric}, {dataset: [greedy answer]}) with no neuron off."""
  per, answers = {}, {}
  for name, s in samples.items():
    answers[name] = miner_deactivation.answers_for(model, params, inputs, s, None, eval_config(r), 0)
    per[name] = float(np.mean([miner_demo.score(name, a, x)["primary"] for a, x in zip(answers[name], s)]))
  return per, answers


def train(r: dict, out_dir: str, evaluate: bool = True) -> dict:
  """Train the MINER recipe `r` into the HF checkpoint `out_dir`; returns the result record (also in
  out_dir/train_demo.json): recipe, digest, losses per step, held-out accuracy, timings."""
  t0 = time.time()
  train_set, val_set = split_samples(r, "train"), split_samples(r, "val")
  os.makedirs(out_dir, exist_ok=True)
  build(r, out_dir)
  model = mmneuron_jax.load_hf(out_dir)
  inputs = miner_inputs.family_inputs(r["family"], out_dir, OPTIONS)
  batches = make_batches(inputs, r, train_set)
  t_data = time.time() - t0
  logging.info("train_demo %s: %s train / %s val samples, %d batches of %d (length %d), data %.1fs", r["family"],
               {k: len(v) for k, v in train_set.items()}, {k: len(v) for k, v in val_set.items()}, len(batches),
               r["batch_size"], batches[0]["input_ids"].shape[1], t_data)
  params, losses = loop.fit(model, batches, r)
  t_train = time.time() - t0 - t_data
  loop.save_trained(model, params, out_dir)
  result = {"recipe": {k: list(v) if isinstance(v, tuple) else v for k, v in r.items()},
            "digest": recipes.digest(r), "weights_sha256": file_digest(os.path.join(out_dir, "model.safetensors")),
            "losses": losses, "seconds": {"data": round(t_data, 1), "train": round(t_train, 1)},
            "n_train": sum(map(len, train_set.values())), "n_val": sum(map(len, val_set.values())),
            "chance": {name: miner_skills.chance(name) for name in r["datasets"]}, "backend": jax.default_backend()}
  if evaluate:
    t1 = time.time()
    trained = dataclasses.replace(model, params=params, _steps={})
    result["heldout_primary"], result["heldout_answers"] = accuracy(trained, params, inputs, r, val_set)
    result["heldout_mean"] = float(np.mean(list(result["heldout_primary"].values())))
    result["seconds"]["eval"] = round(time.time() - t1, 1)
    logging.info("train_demo held-out primary metric: %s (mean %.3f)",
                 {d: round(v, 3) for d, v in result["heldout_primary"].items()}, result["heldout_mean"])
  with open(os.path.join(out_dir, RECIPE_FILE), "w") as f:
    json.dump(result, f, indent=1)
  return result



def run(config, workdir: str) -> str:
  """Task 'train_demo_miner' (configs/train_demo_qwen2_vl.py, train_demo_qwen2_audio.py): train the recipe
  into `config.out` (default <workdir>/checkpoint) and write report.md."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=1))
  r = recipes.recipe(config.family, **dict(config.recipe))
  out_dir = config.out or os.path.join(workdir, "checkpoint")
  return report.write(workdir, out_dir, train(r, out_dir))
