"""The MMNeuron task's optional 'tuned_lens' stage: off by default; when asked for, the tuned vs
logit lens section and plot land in the MMNeuron report.md and the translators reload by name."""
import csv
import json
import os

import numpy as np

from mmneuron_jax.configs import llava_next_demo
from mmneuron_jax import tasks
from mmneuron_jax.io import tuned_lens as saved_lens


def test_default_stages_leave_it_out():
  assert "tuned_lens" not in llava_next_demo.get_config().stages


def test_mmneuron_report_gets_a_tuned_lens_section(tmp_path):
  c = llava_next_demo.get_config()
  c.stages = ("stats", "select", "tuned_lens")
  c.data.n_per_domain = 3
  c.stats.max_samples_per_domain = 2
  c.eval.batch_size = 5
  c.tuned_lens.n_per_domain, c.tuned_lens.positions_per_sample, c.tuned_lens.steps = 3, 8, 20
  workdir = str(tmp_path / "run")
  text = open(tasks.run(c, workdir)).read()
  assert "## Tuned lens vs logit lens" in text and "plots/tuned_lens.png" in text
  assert "Domain-specific neurons" in text  # the MMNeuron sections are still there
  assert open(os.path.join(workdir, "plots", "tuned_lens.png"), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
  res = json.load(open(os.path.join(workdir, "tuned_lens.json")))
  tuned, logit = np.asarray(res["tuned"]["image"]["kl"]), np.asarray(res["logit"]["image"]["kl"])
  assert tuned.shape == logit.shape == (4,) and abs(logit[-1]) < 1e-5
  rows = list(csv.DictReader(open(os.path.join(workdir, "tuned_lens.csv"))))  # the table beside the JSON
  assert [float(r["tuned.image.kl"]) for r in rows] == res["tuned"]["image"]["kl"] and rows[-1]["layer"] == "3"  # 4 layers, from 0
  translators, meta = saved_lens.load(os.path.join(workdir, "tuned_lens"), "tuned_lens")
  assert meta["layers"] == 4 and np.asarray(translators["bias"]).shape == (4, 64)
