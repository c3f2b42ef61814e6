"""The "readouts" task on the InstructBLIP demo (mmneuron_jax/configs/readouts_demo.py with model.demo=instructblip):
the tuned lens beats the logit lens on held-out positions, '*' probe specs expand to the model's own
probe modules (llm, vision, qformer_text, qformer_query), learned masks are shaped per module."""
import json
import os

import numpy as np

from mmneuron_jax.configs import readouts_demo
from mmneuron_jax import tasks
from mmneuron_jax.analysis.neuron_sets import NeuronSet
from mmneuron_jax.models.mllm.instructblip import InstructBlipConfig
from mmneuron_jax.tasks.readouts import report as readouts_report
from mmneuron_jax.tasks.readouts.probes import expand_probe_specs

MODULES = ("llm", "vision", "qformer_text", "qformer_query")


def small_config():
  c = readouts_demo.get_config("model.demo=instructblip,model.id=demo/tiny-instructblip")
  c.data.n_per_domain = 3
  c.batch_size = 5
  c.tuned_lens.n_per_domain = 3
  c.tuned_lens.positions_per_sample = 8
  c.tuned_lens.steps = 40
  c.probes.n_per_domain = 2
  c.probes.specs = ("hidden:token:modality", "*:mean:domain")
  c.probes.steps = 30
  c.probes.control_repeats = 1
  c.masks.modules = ("llm", "qformer_query")
  c.masks.n_per_domain = 1
  c.masks.eval_n_per_domain = 1
  c.masks.steps = 3
  c.masks.remat = False
  c.masks.generate = False  # generation under masks: test_readouts_pipeline (LLaVA-NeXT), mmneuron tests
  return c


def test_expand_probe_specs():
  got = expand_probe_specs(("hidden:mean:domain", "*:mean:domain", "vision:mean:domain"),
                                    dict.fromkeys(MODULES, (2, 8)))
  assert got == ["hidden:mean:domain"] + [f"{m}:mean:domain" for m in MODULES]


def test_readouts_instructblip(tmp_path):
  c = small_config()
  domains = list(c.data.domains)
  workdir = str(tmp_path / "run")
  text = open(tasks.run(c, workdir)).read()
  assert "# Readouts run: demo/tiny-instructblip" in text
  for section in ("Tuned lens vs logit lens", "Layer probes", "Learned masks"):
    assert section in text, section
  probe_modules = InstructBlipConfig.from_hf(json.load(open(os.path.join(workdir, "demo_checkpoint", "config.json")))
                                             ).probe_modules
  assert tuple(probe_modules) == MODULES
  specs = ["hidden:token:modality"] + [f"{m}:mean:domain" for m in MODULES]
  plots = set(os.listdir(os.path.join(workdir, "plots")))
  assert {"tuned_lens.png", "probe_accuracy.png", "mask_effects.png",
          *map(readouts_report.probe_plot_name, specs)} <= plots
  res = json.load(open(os.path.join(workdir, "readouts.json")))
  lens = res["tuned_lens"]
  n_layers = probe_modules["llm"][0]
  assert lens["scan_vs_offline"] < 1e-4 and lens["n_heldout_samples"] == 5 and lens["n_heldout_points"] > 0
  for kind in ("image", "text"):  # image = the Q-Former query outputs in the LLM
    logit, tuned = np.asarray(lens["logit"][kind]["kl"]), np.asarray(lens["tuned"][kind]["kl"])
    assert logit.shape == tuned.shape == (n_layers,) and logit[-1] < 1e-5 and tuned[-1] < 1e-5
    assert (tuned[:-1] < logit[:-1]).all(), (kind, logit, tuned)
  assert list(res["probes"]) == specs
  for spec, r in res["probes"].items():
    module = spec.split(":")[0]
    acc = np.asarray([r["heldout_acc"], r["control_acc"]])
    assert acc.shape == (2, probe_modules["llm" if module == "hidden" else module][0])
    assert ((acc >= 0) & (acc <= 1)).all()
    assert r["classes"] == (["text", "image"] if spec.endswith("modality") else domains)
  assert np.asarray(res["probes"]["hidden:token:modality"]["heldout_acc"]).max() > 0.9  # query outputs vs text
  assert sorted(os.listdir(os.path.join(workdir, "neurons_learned"))) == ["llm.json", "qformer_query.json"]
  for m in c.masks.modules:
    s = NeuronSet.load(os.path.join(workdir, "neurons_learned", f"{m}.json"))
    assert s.module == m and s.group_names == domains and s.mask.shape == (len(domains),) + probe_modules[m]
  assert np.asarray(res["masks"]["effects"]["learned"]["nll"]).shape == (len(domains), len(domains))
  assert set(res["masks"]["effects"]) == {"none", "learned", "random"} and not res["masks"]["accuracy"]
