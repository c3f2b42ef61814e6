"""The main job on the embedded default: a smoke run of the whole MMNeuron pipeline, and a
statistics run SIGKILLed midway that resumes to totals identical to an uninterrupted run."""
import csv
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np

from mmneuron_jax.configs import llava_next_demo
from mmneuron_jax import tasks
from mmneuron_jax.analysis.neuron_sets import NeuronSet
from mmneuron_jax.io.stats_store import StatsStore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOMAINS = llava_next_demo.get_config().data.domains


def small_config():
  c = llava_next_demo.get_config()
  c.data.n_per_domain = 6
  c.stats.max_samples_per_domain = 4
  c.eval.n_per_domain = 2
  c.eval.max_new_tokens = 4
  c.lens.n_per_domain = 2
  # the authors' splits (the demo config itself runs every stage on 'val', where its bundled model's
  # pinned numbers were measured)
  c.stats.split = c.lens.split = "train"
  return c


def test_demo_pipeline_writes_report(tmp_path):
  workdir = str(tmp_path / "run")
  report = tasks.run(small_config(), workdir)
  assert report == os.path.join(workdir, "report.md")
  text = open(report).read()
  for section in ("Domain-specific neurons", "Deactivation", "Logit lens"):
    assert section in text
  sections = [part.split("\n")[0] for part in text.split("\n## ")[1:]]
  assert "Protocol" in sections[:3], sections  # the report opens with what it ran (model card, headline, protocol)
  assert "Statistics and evaluation share 0 record ids." in text and "projector †" in text
  used = json.load(open(os.path.join(workdir, "records_used.json")))
  assert set(used) == {"stats", "eval", "lens"} and not set(used["stats"]) & set(used["eval"])
  assert len(used["stats"]) == 4 * len(DOMAINS) and len(used["eval"]) == 2 * len(DOMAINS)
  assert all("-val-" in i for i in used["eval"]) and not any("-val-" in i for i in used["lens"])
  plots = os.listdir(os.path.join(workdir, "plots"))
  assert {"neurons_per_layer.png", "logit_lens.png"} <= set(plots)
  for name in plots:
    assert open(os.path.join(workdir, "plots", name), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
  sets = {m: NeuronSet.load(os.path.join(workdir, "neurons", f"{m}.json")) for m in ("llm", "vision", "projector")}
  assert all(s.mask.shape[0] == len(DOMAINS) for s in sets.values())
  rows = json.load(open(os.path.join(workdir, "deactivation.json")))["rows"]
  assert len(rows) == len(DOMAINS) * (5 + 4)  # five conditions + four random controls per domain
  lens = json.load(open(os.path.join(workdir, "logit_lens.json")))
  assert set(lens) == set(DOMAINS) and all(np.isfinite(lens[d]["entropy"]).all() for d in DOMAINS)
  # the report's tables also as CSV beside the JSON, with the JSON's numbers exactly
  table = list(csv.DictReader(open(os.path.join(workdir, "deactivation.csv"))))
  assert len(table) == len(rows) and all(same(t[k], v) for t, r in zip(table, rows) for k, v in r.items())
  table = list(csv.DictReader(open(os.path.join(workdir, "logit_lens.csv"))))
  n_layers = len(lens[DOMAINS[0]]["entropy"])
  assert [(t["domain"], int(t["layer"])) for t in table] == [(d, l) for d in lens for l in range(n_layers)]  # from 0
  for t in table:
    r = lens[t["domain"]]
    for k in ("entropy", "entropy_image", "top1_prob", "top1"):
      assert same(t[k], r[k][int(t["layer"])]), (t, k)
    assert same(t["positions"], r["positions"]) and same(t["image_positions"], r["image_positions"])


def same(cell: str, value) -> bool:
  """A CSV cell holds the JSON value exactly (floats round-trip; None is empty)."""
  if value is None:
    return cell == ""
  if isinstance(value, (bool, str)):
    return cell == str(value)
  if isinstance(value, (int, float)):
    return float(cell) == value or (math.isnan(value) and math.isnan(float(cell)))
  return json.loads(cell) == value


def stats_command(workdir):
  return [sys.executable, "-m", "mmneuron_jax",
          "--config=llava_next_demo", f"--workdir={workdir}",
          "--config.stages=('stats',)", "--config.stats.batch_size=1", "--config.stats.commit_every=1",
          "--config.stats.max_samples_per_domain=6", "--config.data.n_per_domain=6"]


def read_cursor(stats_dir):
  try:
    with open(os.path.join(stats_dir, "state.json")) as f:
      return json.load(f)["cursor"]
  except (OSError, ValueError, KeyError):
    return 0


def test_killed_statistics_run_resumes_bit_identical(tmp_path):
  env = dict(os.environ, HF_HUB_OFFLINE="1", JAX_PLATFORMS="cpu")
  killed, clean = str(tmp_path / "killed"), str(tmp_path / "clean")
  proc = subprocess.Popen(stats_command(killed), env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  while read_cursor(os.path.join(killed, "stats")) < 3 and proc.poll() is None and time.time() < deadline:
    time.sleep(0.02)
  assert proc.poll() is None, "the statistics run ended before it could be killed"
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  at_kill = read_cursor(os.path.join(killed, "stats"))
  assert 0 < at_kill < 30
  for workdir in (killed, clean):
    subprocess.run(stats_command(workdir), env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
  a = StatsStore(os.path.join(killed, "stats"), json.load(open(os.path.join(killed, "stats", "state.json"))))
  b = StatsStore(os.path.join(clean, "stats"), json.load(open(os.path.join(clean, "stats", "state.json"))))
  assert a.cursor == b.cursor == 30
  ta, tb = a.totals(), b.totals()
  assert sorted(ta) == sorted(tb)
  for name in ta:
    assert ta[name].dtype == tb[name].dtype
    np.testing.assert_array_equal(ta[name], tb[name], err_msg=name)
