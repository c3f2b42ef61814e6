"""Where an MMNeuron run gets its model, inputs builder and records, from the config."""
import os
import shutil

from absl import logging

from mmneuron_jax import loading
from mmneuron_jax.analysis import finite
from mmneuron_jax.data.metrics import vqa_metrics as metrics
from mmneuron_jax.data.sources import datasets, records as records_lib
from mmneuron_jax.data.synthetic import demo, demo_stamp
from mmneuron_jax.errors import MissingFile, UserError
from mmneuron_jax.io import paths
from mmneuron_jax.io.hub import resolve_checkpoint
from mmneuron_jax.tasks.common import data_checks, families
from mmneuron_jax.data.synthetic import skills as demo_skills
from mmneuron_jax.tasks.train_demo import recipes
from mmneuron_jax.tasks.train_demo import cache

load_image = records_lib.load_image


def score(answers, records, metric="authors"):
  """Mean metrics of `answers`; `metric` picks the 'primary' column (data/metrics/vqa_metrics.py)."""
  return metrics.score_all(answers, records, primary=metric)


def image_size(record):
  """(h, w) of a record's image (after joining multi-frame images)."""
  w, h = load_image(record).size
  return h, w


def _split_path(path: str, split: str | None) -> str:
  return path.replace("{split}", split) if split and "{split}" in path else path


def load_records(config, workdir, split=None):
  """-> (good records in a deterministic per-domain order, bad [(id, reason)]) of `split`.

  split: 'train' | 'val' | 'test' (None: the source's single list of old, 'val' for the paper
  datasets and 'train' for the demo). Source 'records': a `{split}` in `data.path` names one file
  per split; else rows with a `split` column are filtered by it; else every split is the whole file
  (the report then shows how many records statistics and evaluation share).
  Order (`data.order`): 'authors' = the authors' sample order for the paper datasets (datasets.py;
  the demo and records files have none and take the sha256 order); 'sha256' =
  `records.deterministic_shuffle(data.seed)`."""
  source, order = config.data.source, config.data.get("order", "authors")
  if order not in ("authors", "sha256"):
    raise ValueError(f"config.data.order={order!r}; expected 'authors' or 'sha256'")
  if source == "demo":
    recs = demo.demo_records(n_per_domain=config.data.n_per_domain, seed=config.data.seed, split=split or "train")
  elif source == "skills":  # the learnable set the trained demo models answer (data/synthetic/skills.py)
    recs = demo_skills.skills_records(n_per_domain=config.data.n_per_domain, split=split or "val",
                                      seed=config.data.seed, domains=tuple(config.data.domains))
  elif source in ("records", "paper") and not os.path.exists(_split_path(config.data.path, split)):
    raise MissingFile(f"config.data.path={config.data.path!r}: no such file or directory "
                      f"({_split_path(config.data.path, split)})")
  elif source == "records":
    recs = records_lib.read_records(_split_path(config.data.path, split), image_root=config.data.image_root or None)
    if split and "{split}" not in config.data.path and any("split" in r.meta for r in recs):
      recs = [r for r in recs if str(r.meta.get("split")) == split]
  elif source == "paper":
    recs = datasets.load_all(config.data.path, n_per_domain=config.data.n_per_domain or None, split=split or "val",
                             order=order)
  else:
    raise UserError(f"config.data.source={source!r}; expected 'demo', 'skills', 'records' or 'paper'")
  where = config.data.path or f"data.source={source!r}"
  data_checks.near_miss_schema(recs, where)
  good, bad = records_lib.validate(recs)
  data_checks.check_domains(good, list(config.data.domains), where)
  for rid, why in bad:
    logging.warning("skipping record %s: %s", rid, why)
  if not (source == "paper" and order == "authors"):
    good = records_lib.deterministic_shuffle(good, config.data.seed)
  return good, bad


def load_model(config, workdir, records):
  """-> (Model, inputs builder, model id, PipelineFamily). Demo (no `model.path`): build the tiny
  checkpoint of family `config.model.demo` in the workdir, for the words of this run's prompts;
  with `config.model.demo_weights='trained'`, the trained demo of the run's prompt format instead
  (tasks/train_demo: bundled, or trained on first use)."""
  path, model_id = config.model.path and resolve_checkpoint(config.model.path), ""  # a directory or a cached hub id
  if not path and config.model.get("demo_weights", "random") == "trained":
    fam = families.family(config.model.get("demo", "llava_next"), "config.model.demo")
    path = paths.local_scratch(workdir, "demo_checkpoint")  # local: the loader memory-maps it
    # The id names the weights: a rerun in this workdir with other weights must not reuse its statistics.
    model_id = f"{config.model.id or path} (trained, recipe {trained_demo(path, fam, config)['digest']})"
  elif not path:
    fam = families.family(config.model.get("demo", "llava_next"), "config.model.demo")
    path = paths.local_scratch(workdir, "demo_checkpoint")  # local: the loader memory-maps it
    if os.path.exists(os.path.join(path, "train_demo.json")):  # a trained demo from an earlier run: not this one
      shutil.rmtree(path)
    demo_stamp.ensure(path, fam.build_demo, fam.name, fam.vocabulary_texts(records, config.eval), config.model.seed)
  if not model_id:
    model_id = config.model.id or config.model.path or path
  # On the config's mesh (sharding.mesh_from_spec): each device reads only its slices.
  model = loading.load_for_config(path, config)
  if config.model.get("check_weights", True):
    finite.check_params(model.params, path)
  fam = families.family(model.family, f"{path}: model_type")
  return model, fam.make_inputs(path, config, model.config), model_id, fam


def demo_recipe(fam, config) -> dict:
  """The trained-demo recipe for this run: the family's recipe in the run's evaluation prompt format."""
  return recipes.recipe(fam.name, template=config.eval.get("template") or fam.template,
                        style=config.eval.get("style") or fam.style)


def trained_demo(path, fam, config) -> dict:
  """Put the trained demo checkpoint of this run's recipe in `path`; returns its train_demo.json record."""
  result = cache.ensure(path, demo_recipe(fam, config))
  logging.info("trained demo %s (%s): recipe %s, held-out mean primary %.3f", fam.name, result["source"],
               result["digest"], result.get("heldout_mean", float("nan")))
  return result
