"""Train a tiny demo model from its recipe (recipes.py) and write it as a HF checkpoint.

1. the family's demo checkpoint writer builds the untrained model (vocabulary of the train and
   validation texts, deterministic random weights) in `out_dir`;
2. it is loaded through `load_hf` and trained with optax on answer-token cross-entropy
   (steps.py): float32, fixed seeds, fixed batch shapes, so a CPU run is repeatable bit for bit;
3. the trained params are written back under the HF names (convert/export.py) into the same
   directory: model.safetensors, config.json, tokenizer and processor files, train_demo.json;
4. held-out accuracy: greedy answers on the validation split, scored with the MMNeuron metrics.
"""
import dataclasses
import hashlib
import json
import os
import time

import jax
import numpy as np
from absl import logging

from mmneuron_jax.data.sources import records as records_lib
from mmneuron_jax.data.inputs.batching import chunks, round_up
from mmneuron_jax.tasks.train_demo import loop, recipes, steps
from mmneuron_jax.data.synthetic import skills as demo_skills
from mmneuron_jax.data.metrics import vqa_metrics as metrics
from mmneuron_jax.tasks.common.deactivation import generate_answers
import mmneuron_jax
from mmneuron_jax.tasks.common import families

RECIPE_FILE = "train_demo.json"


def skills_split(r: dict, split: str) -> list:
  n = r["n_train_per_domain"] if split == "train" else r["n_val_per_domain"]
  return demo_skills.skills_records(n, split, r["data_seed"], r["domains"])


def prompt_cfg(r: dict) -> dict:
  return {"template": r["template"], "style": r["style"]}


def make_batches(inputs, family, r: dict, records: list) -> list:
  """Fixed-shape training batches [batch_size, longest row rounded up] (one compile), rows in a
  seeded order; the last short batch is padded with empty rows."""
  rng = np.random.default_rng([r["seed"], 1])
  prompts = [family.eval_prompt(x, prompt_cfg(r)) for x in records]
  images = [records_lib.load_image(x) for x in records]
  answers = [x.answers[0] for x in records]
  parts = list(chunks(list(rng.permutation(len(records))), r["batch_size"]))
  raw = [steps.answer_rows(inputs, [prompts[i] for i in part], [answers[i] for i in part], [images[i] for i in part])
         for part in parts]
  length = round_up(max(b["input_ids"].shape[1] for b in raw), r["length_multiple"])
  batches = [steps.answer_batch(inputs, b, [answers[i] for i in part], r["batch_size"], length)
             for b, part in zip(raw, parts)]
  return steps.same_widths(batches, ("qformer_input_ids", "qformer_attention_mask"),
                           pad_id=getattr(inputs, "qformer_pad_id", 0))


def accuracy(model, params, inputs, family, r: dict, records: list, batch_size: int = 8, max_new_tokens: int = 6):
  """{domain: standard primary metric} of greedy answers on `records` (the MMNeuron evaluation path;
  `metrics.primary_metric`: the authors' scoring expects their datasets' answer formats)."""
  answers = generate_answers(model, params, inputs, records, lambda x: family.eval_prompt(x, prompt_cfg(r)),
                             records_lib.load_image, None, batch_size, max_new_tokens)
  out = {}
  for d in r["domains"]:
    pairs = [(a, x) for a, x in zip(answers, records) if x.domain == d]
    out[d] = metrics.score_all([a for a, _ in pairs], [x for _, x in pairs], primary="standard")["primary"]
  return out, answers


def file_digest(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()[:16]


def train(r: dict, out_dir: str, evaluate: bool = True) -> dict:
  """Train the recipe `r` into the HF checkpoint `out_dir`; returns the result record (also in
  out_dir/train_demo.json): recipe, digest, losses per step, held-out accuracy, timings."""
  t0 = time.time()
  family = families.family(r["family"], "recipe family")
  train_recs, val_recs = skills_split(r, "train"), skills_split(r, "val")
  texts = family.vocabulary_texts(train_recs + val_recs, prompt_cfg(r))
  os.makedirs(out_dir, exist_ok=True)
  family.build_demo(out_dir, texts, seed=r["model_seed"])
  model = mmneuron_jax.load_hf(out_dir)
  inputs = family.make_inputs(out_dir, _RunConfig(), model.config)
  batches = make_batches(inputs, family, r, train_recs)
  t_data = time.time() - t0
  logging.info("train_demo %s: %d train / %d val records, %d batches of %d (lengths %s), data %.1fs", r["family"],
               len(train_recs), len(val_recs), len(batches), r["batch_size"],
               sorted({b["input_ids"].shape[1] for b in batches}), t_data)
  params, losses = loop.fit(model, batches, r)
  t_train = time.time() - t0 - t_data
  loop.save_trained(model, params, out_dir)
  result = {"recipe": {k: list(v) if isinstance(v, tuple) else v for k, v in r.items()},
            "digest": recipes.digest(r), "weights_sha256": file_digest(os.path.join(out_dir, "model.safetensors")),
            "losses": losses, "seconds": {"data": round(t_data, 1), "train": round(t_train, 1)},
            "n_train": len(train_recs), "n_val": len(val_recs),
            "backend": jax.default_backend()}
  if evaluate:
    t1 = time.time()
    trained = dataclasses.replace(model, params=params, _steps={})
    result["heldout_primary"], result["heldout_answers"] = accuracy(trained, params, inputs, family, r, val_recs)
    result["heldout_mean"] = float(np.mean(list(result["heldout_primary"].values())))
    result["seconds"]["eval"] = round(time.time() - t1, 1)
    logging.info("train_demo held-out primary metric: %s (mean %.3f)",
                 {d: round(v, 3) for d, v in result["heldout_primary"].items()}, result["heldout_mean"])
  with open(os.path.join(out_dir, RECIPE_FILE), "w") as f:
    json.dump(result, f, indent=1)
  return result


class _RunConfig:
  """The slice of a run config the inputs builders read (`model.image_text` for InstructBLIP)."""
  model = {"image_text": "literal"}
