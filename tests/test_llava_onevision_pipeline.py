"""The MMNeuron pipeline end to end on the LLaVA-OneVision demo config (the bundled trained tiny checkpoint):
statistics, selection, deactivation and the logit lens write their report and files."""
import json
import os

import numpy as np

from mmneuron_jax import tasks
from mmneuron_jax.analysis.neuron_sets import NeuronSet
from mmneuron_jax.configs import llava_onevision_demo


def test_onevision_demo_pipeline_writes_report(tmp_path):
  c = llava_onevision_demo.get_config()
  c.data.domains = ("medical", "documents")  # two domains keep it short; selection needs more than one
  c.data.n_per_domain = 4
  c.stats.max_samples_per_domain = 2
  c.eval.n_per_domain = 1
  c.eval.max_new_tokens = 3
  c.lens.n_per_domain = 1
  workdir = str(tmp_path / "run")
  report = tasks.run(c, workdir)
  text = open(report).read()
  for section in ("Domain-specific neurons", "Deactivation", "Logit lens"):
    assert section in text
  with open(os.path.join(workdir, "demo_checkpoint", "config.json")) as f:
    assert json.load(f)["model_type"] == "llava_onevision"
  domains = c.data.domains
  sets = {m: NeuronSet.load(os.path.join(workdir, "neurons", f"{m}.json")) for m in ("llm", "vision", "projector")}
  # [domains, layers, neurons] of each probe module: the 28 px SigLIP tower (3 layers, 80 neurons),
  # the projector (1 x 64), the Qwen2 decoder (4 x 96)
  shapes = {m: s.mask.shape for m, s in sets.items()}
  assert shapes == {"llm": (2, 4, 96), "vision": (2, 3, 80), "projector": (2, 1, 64)}, shapes
  rows = json.load(open(os.path.join(workdir, "deactivation.json")))["rows"]
  assert len(rows) == len(domains) * (5 + 4)  # five conditions + four random controls per domain
  lens = json.load(open(os.path.join(workdir, "logit_lens.json")))
  assert set(lens) == set(domains) and all(np.isfinite(lens[d]["entropy"]).all() for d in domains)
