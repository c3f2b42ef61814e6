"""Smoke run of the "readouts" task through `mmneuron_jax.tasks.run` on the embedded demo (small
overrides): tuned lens, probes and learned masks land in report.md with plots; translators reload
by name; learned sets are compared with given DAPE sets."""
import csv
import json
import os

import numpy as np

from mmneuron_jax.configs import readouts_demo
from mmneuron_jax import tasks
from mmneuron_jax.io import tuned_lens as saved_lens
from mmneuron_jax.analysis.neuron_sets import NeuronSet


def small_config():
  c = readouts_demo.get_config()
  c.data.n_per_domain = 3
  c.tuned_lens.n_per_domain = 3
  c.tuned_lens.positions_per_sample = 8
  c.tuned_lens.steps = 20
  c.probes.n_per_domain = 3
  c.probes.specs = ("hidden:mean:domain", "vision:mean:domain")
  c.probes.steps = 50
  c.probes.control_repeats = 1
  c.masks.n_per_domain = 1
  c.masks.eval_n_per_domain = 1
  c.masks.steps = 3
  c.masks.remat = False
  c.masks.max_new_tokens = 2
  c.batch_size = 5
  return c


def fake_dape_run(path, layers, width, domains):
  os.makedirs(os.path.join(path, "neurons"))
  mask = np.random.default_rng(0).random((len(domains), layers, width)) < 0.05
  NeuronSet("demo/tiny-llava-next", "llm", domains, layers, width, mask, {"method": "dape"}).save(
      os.path.join(path, "neurons", "llm.json"))
  return mask


def test_readouts_pipeline(tmp_path):
  c = small_config()
  domains = list(c.data.domains)
  dape = fake_dape_run(str(tmp_path / "mmneuron_run"), 4, 96, domains)
  c.compare_sets_dir = str(tmp_path / "mmneuron_run")
  workdir = str(tmp_path / "run")
  report = tasks.run(c, workdir)
  text = open(report).read()
  for section in ("Tuned lens vs logit lens", "Layer probes", "Learned masks", "Compared with the DAPE sets"):
    assert section in text, section
  plots = set(os.listdir(os.path.join(workdir, "plots")))
  assert {"tuned_lens.png", "probe_accuracy.png", "mask_effects.png", "pca_hidden_mean_domain.png",
          "pca_vision_mean_domain.png"} <= plots
  for name in plots:
    assert open(os.path.join(workdir, "plots", name), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
  res = json.load(open(os.path.join(workdir, "readouts.json")))
  lens = res["tuned_lens"]
  assert lens["scan_vs_offline"] < 1e-4 and lens["n_heldout_samples"] == 5
  assert np.asarray(lens["logit"]["image"]["kl"])[-1] < 1e-5  # last layer: the model's own distribution
  for spec in c.probes.specs:
    acc = np.asarray(res["probes"][spec]["heldout_acc"])
    assert acc.shape == ((4,) if spec.startswith("hidden") else (3,)) and ((acc >= 0) & (acc <= 1)).all()
  learned = NeuronSet.load(os.path.join(workdir, "neurons_learned", "llm.json"))
  assert learned.group_names == domains and learned.mask.shape == (5, 4, 96)
  for row in res["masks"]["comparison"]:
    g = domains.index(row["domain"])
    assert row["dape"] == dape[g].sum() and row["overlap"] == (learned.mask[g] & dape[g]).sum()
  assert {a["condition"] for a in res["masks"]["accuracy"]} == {"none", "learned", "random", "dape"}
  # the tables also as CSV beside readouts.json, with its numbers exactly
  rows = list(csv.DictReader(open(os.path.join(workdir, "readouts.tuned_lens.csv"))))
  assert [float(r["logit.image.kl"]) for r in rows] == lens["logit"]["image"]["kl"]
  assert [float(r["tuned.answer.mean_rank"]) for r in rows] == lens["tuned"]["answer"]["mean_rank"]
  rows = list(csv.DictReader(open(os.path.join(workdir, "readouts.probes.csv"))))
  assert [float(r["heldout_acc"]) for r in rows] == [a for s in c.probes.specs for a in res["probes"][s]["heldout_acc"]]
  rows = list(csv.DictReader(open(os.path.join(workdir, "readouts.masks_effects.csv"))))
  eff = res["masks"]["effects"]
  assert [float(r["nll"]) for r in rows[:len(domains)]] == eff["none"]["nll"]
  assert [float(r["nll"]) for r in rows if r["condition"] == "learned"] == [v for row in eff["learned"]["nll"] for v in row]
  rows = list(csv.DictReader(open(os.path.join(workdir, "readouts.masks_accuracy.csv"))))
  assert [float(r["primary"]) for r in rows] == [a["primary"] for a in res["masks"]["accuracy"]]
  translators, meta = saved_lens.load(os.path.join(workdir, "tuned_lens"), "tuned_lens")  # by name
  assert meta["layers"] == 4 and np.asarray(translators["weight"]).shape == (4, 64, 64) and not lens["loaded"]
