"""URL run directories (`file://`, `memory://`; `gs://` takes the same code paths): the statistics
store through tensorstore's kvstore drivers, every other file through io/paths.py, the lock as an
object. A file:// run SIGKILLed midway resumes to totals bit-identical to an uninterrupted local run;
a memory:// run interrupted in-process resumes the same way."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import fsspec
import numpy as np
import pytest

from mmneuron_jax import tasks
from mmneuron_jax.configs import llava_next_demo, miner_qwen2_vl_demo, readouts_demo
from mmneuron_jax.errors import UserError
from mmneuron_jax.io import kvstore, paths, run_dir, run_lock
from mmneuron_jax.io.stats_store import FingerprintMismatch, StatsStore
from mmneuron_jax.tasks import miner as miner_task
from mmneuron_jax.tasks.miner import scores as miner_scores, snapshots as miner_snapshots
from mmneuron_jax.tasks.mmneuron import domain_stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOMAINS = ("medical", "documents")


@pytest.fixture(autouse=True)
def scratch(tmp_path, monkeypatch):
  """A URL workdir's local demo checkpoint goes under tmp_path, not ~/.cache."""
  monkeypatch.setenv("MMNEURON_CACHE", str(tmp_path / "cache"))


def stats_config():
  """Two domains, 6 samples each, batches of one, stats only: a few seconds on a CPU (the same run
  as stats_command)."""
  c = llava_next_demo.get_config()
  c.model.demo_weights, c.data.source = "random", "demo"
  c.stages = ("stats",)
  c.data.domains = DOMAINS
  c.data.n_per_domain = 6
  c.stats.max_samples_per_domain = 6
  c.stats.batch_size = 1
  c.stats.commit_every = 1
  c.stats.prefetch = 0
  return c


def url_store(url):
  """The StatsStore at URL, read back through the kvstore driver."""
  data, _ = kvstore.read(kvstore.open_dir(url), "state.json")
  return StatsStore(url, json.loads(data))


def assert_same_totals(a: dict, b: dict):
  assert sorted(a) == sorted(b)
  for name in a:
    assert a[name].dtype == b[name].dtype
    np.testing.assert_array_equal(a[name], b[name], err_msg=name)  # bit-identical


def test_stats_store_on_urls_matches_numpy(tmp_path):
  rng = np.random.default_rng(0)
  parts = [{"n/a": rng.integers(0, 9, (3, 4)), "b": rng.standard_normal(5)} for _ in range(4)]
  spec = {"n/a": ((3, 4), "int64"), "b": ((5,), "float64")}
  for url in ("memory://store_test/stats", f"file://{tmp_path}/stats"):
    store = StatsStore.open_or_create(url, spec, {"data": "1"})
    totals = {k: np.zeros(s, d) for k, (s, d) in spec.items()}
    for i, p in enumerate(parts):
      totals = {k: totals[k] + p[k] for k in totals}
      store.commit(totals, i + 1)
    again = StatsStore.open_or_create(url, spec, {"data": "1"})
    assert again.cursor == 4 and again.generation == 4
    expect = {"n/a": sum(p["n/a"] for p in parts), "b": parts[0]["b"] + parts[1]["b"] + parts[2]["b"] + parts[3]["b"]}
    assert_same_totals(again.totals(), expect)
    assert kvstore.children(kvstore.open_dir(url)) == ["gen_000004", "state.json"]  # older generations removed
    with pytest.raises(FingerprintMismatch, match="these inputs differ: data"):
      StatsStore.open_or_create(url, spec, {"data": "2"})
  assert sorted(os.listdir(tmp_path / "stats")) == ["gen_000004", "state.json"]  # no empty directories left


def test_url_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path):
  url = f"file://{tmp_path}/w"
  with run_lock.locked(url):
    with pytest.raises(UserError, match=rf"another run is using this run directory \(pid {os.getpid()} on host "):
      with run_lock.locked(url):
        pass
  assert not os.path.exists(tmp_path / "w" / ".lock")  # released on exit
  code = ("import os, sys; sys.path.insert(0, %r); from mmneuron_jax.io import run_lock\n"
          "with run_lock.locked(%r): os._exit(1)" % (ROOT, url))
  subprocess.run([sys.executable, "-c", code], check=False)
  left = json.loads((tmp_path / "w" / ".lock").read_text())
  assert left["host"] == socket.gethostname() and left["pid"] != os.getpid()  # the killed holder's
  with run_lock.locked(url):  # its process is gone: taken over
    pass
  kv = kvstore.open_dir("memory://lock_test")
  other = {"pid": 1, "host": "another-host", "time": time.time()}
  kvstore.write(kv, run_lock.LOCK, json.dumps(other).encode())
  with pytest.raises(UserError, match=r"pid 1 on host another-host.*delete memory://lock_test/.lock"):
    with run_lock.locked("memory://lock_test"):
      pass
  kvstore.write(kv, run_lock.LOCK, json.dumps(dict(other, time=time.time() - run_lock.STALE_S - 1)).encode())
  with run_lock.locked("memory://lock_test"):  # no heartbeat for longer than STALE_S: taken over
    pass
  assert kvstore.read(kv, run_lock.LOCK)[0] is None


def test_paths_write_and_list_on_urls(tmp_path):
  for root in ("memory://paths_test", f"file://{tmp_path}/p"):
    paths.makedirs(paths.join(root, "plots"))
    paths.write_json(paths.join(root, "a.json"), {"x": [1, 2]}, indent=1)
    with paths.open(paths.join(root, "plots", "r.md"), "w") as f:
      f.write("hello")
    assert paths.read_json(paths.join(root, "a.json")) == {"x": [1, 2]}
    assert paths.listdir(root) == ["a.json", "plots"] and paths.isdir(paths.join(root, "plots"))
    with paths.open(paths.join(root, "plots", "r.md")) as f:
      assert f.read() == "hello"
    paths.remove(paths.join(root, "a.json"))
    assert not paths.exists(paths.join(root, "a.json"))
  assert (tmp_path / "p" / "plots" / "r.md").read_text() == "hello"


def test_unconverted_tasks_refuse_a_url_workdir():
  c = stats_config()
  c.stages = ("stats", "select", "atlas")
  with pytest.raises(UserError, match=r"config.stages \['atlas'\] need a local run directory"):
    tasks.run(c, "memory://refused")
  c.stages = ("stats",)
  with pytest.raises(UserError, match=r"no filesystem for this URL \(Protocol not known: nosuch\)"):
    tasks.run(c, "nosuch://refused")
  with pytest.raises(UserError, match="tensorstore has no kvstore driver"):
    tasks.run(c, "hf://refused/run")
  c.task = "train_demo"
  with pytest.raises(UserError, match="task 'train_demo' needs a local run directory"):
    tasks.run(c, "memory://refused")
  assert not fsspec.filesystem("memory").exists("/refused")


class Interrupt(Exception):
  pass


def interrupting(make_step_fn, at: int):
  """`make_step_fn` whose steps raise Interrupt at the `at`-th batch run (1-based, counted over every
  step it makes): the batches before it are committed."""
  calls = []

  def make(*args, **kwargs):
    step = make_step_fn(*args, **kwargs)

    def run(batch):
      calls.append(1)
      if len(calls) == at:
        raise Interrupt()
      return step.run(batch)
    return type(step)(prepare=step.prepare, run=run)
  return make


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
  """An uninterrupted run of stats_config in a local directory -> (workdir, its StatsStore)."""
  local = str(tmp_path_factory.mktemp("url_workdir") / "local")
  tasks.run(stats_config(), local)
  with open(os.path.join(local, "stats", "state.json")) as f:
    return local, StatsStore(os.path.join(local, "stats"), json.load(f))


def test_memory_workdir_resumes_in_process_like_a_local_run(local_run, monkeypatch):
  local, clean = local_run

  make_step_fn = domain_stats.make_step_fn
  url = "memory://resume_test/run"
  monkeypatch.setattr(domain_stats, "make_step_fn", interrupting(make_step_fn, 4))  # 3 batches committed
  with pytest.raises(Interrupt):
    tasks.run(stats_config(), url)
  assert url_store(url + "/stats").cursor == 3
  assert run_dir.progress_lines(url) == ["stats at batch 3"]
  monkeypatch.setattr(domain_stats, "make_step_fn", make_step_fn)
  tasks.run(stats_config(), url)  # resumes at batch 3
  resumed = url_store(url + "/stats")
  assert resumed.cursor == clean.cursor == 12
  assert resumed.extra["accumulate"]["batches"] == 12
  assert_same_totals(resumed.totals(), clean.totals())
  with open(os.path.join(local, "config.json"), "rb") as f, paths.open(url + "/config.json", "rb") as g:
    assert g.read() == f.read()  # the same bytes as a local run's
  assert len(paths.listdir(url + "/configs")) == 2  # each attempt's config kept


def stats_command(workdir):
  return [sys.executable, "-m", "mmneuron_jax", "--config=llava_next_demo", f"--workdir={workdir}",
          "--config.model.demo_weights=random", "--config.data.source=demo", f"--config.data.domains={DOMAINS}",
          "--config.stages=('stats',)", "--config.stats.batch_size=1", "--config.stats.commit_every=1",
          "--config.stats.prefetch=0", "--config.stats.max_samples_per_domain=6", "--config.data.n_per_domain=6"]


def read_cursor(stats_dir):
  try:
    with open(os.path.join(stats_dir, "state.json")) as f:
      return json.load(f)["cursor"]
  except (OSError, ValueError, KeyError):
    return 0


def test_killed_file_url_run_resumes_bit_identical(local_run, tmp_path):
  env = dict(os.environ, HF_HUB_OFFLINE="1", JAX_PLATFORMS="cpu", MMNEURON_CACHE=str(tmp_path / "cache"))
  killed = tmp_path / "killed"
  url = f"file://{killed}"
  proc = subprocess.Popen(stats_command(url), env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  while read_cursor(killed / "stats") < 3 and proc.poll() is None and time.time() < deadline:
    time.sleep(0.02)
  assert proc.poll() is None, "the statistics run ended before it could be killed"
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  at_kill = read_cursor(killed / "stats")
  assert 0 < at_kill < 12
  assert (killed / ".lock").exists()  # the killed run's lock object: taken over by the rerun
  subprocess.run(stats_command(url), env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)
  assert not (killed / ".lock").exists()
  a, b = url_store(url + "/stats"), local_run[1]  # b: the same run, uninterrupted, in a local directory
  assert a.cursor == b.cursor == 12
  assert_same_totals(a.totals(), b.totals())


def miner_config():
  """The random MINER demo at tiny sizes: 4 image_qa samples in batches of 2, a snapshot at 2 samples, and the
  optional stages (a one-point sweep, last-token attention, semantics)."""
  c = miner_qwen2_vl_demo.random_demo(miner_qwen2_vl_demo.get_config())
  c.stages = ("scores", "select", "deactivate", "sweep", "last_token", "semantics")  # + the optional stages
  c.sweep.ratios, c.sweep.weights = (0.02,), ("mean",)
  c.data.datasets = ("image_qa",)
  c.data.n_per_dataset = 4
  c.scores.batch_size, c.scores.commit_every, c.scores.prefetch = 2, 1, 0
  c.scores.grad = False
  c.scores.snapshots = (2,)
  c.deactivate.n_per_dataset, c.deactivate.max_new_tokens = 1, 2
  c.deactivate.conditions = ("none", "image")
  return c


def test_miner_on_a_memory_workdir_resumes_and_matches_a_local_run(tmp_path, monkeypatch):
  local = str(tmp_path / "local")
  tasks.run(miner_config(), local)

  make_step_fn = miner_scores.make_step_fn
  url = "memory://miner_resume_test/run"
  monkeypatch.setattr(miner_scores, "make_step_fn", interrupting(make_step_fn, 2))  # the first batch committed
  with pytest.raises(Interrupt):
    tasks.run(miner_config(), url)
  assert url_store(url + "/stats/image_qa").cursor == 1
  monkeypatch.setattr(miner_scores, "make_step_fn", make_step_fn)
  tasks.run(miner_config(), url)  # resumes at batch 1
  a = url_store(url + "/stats/image_qa")
  with open(os.path.join(local, "stats", "image_qa", "state.json")) as f:
    b = StatsStore(os.path.join(local, "stats", "image_qa"), json.load(f))
  assert a.cursor == b.cursor == 2
  assert_same_totals(a.totals(), b.totals())  # bit-identical sums after the resume
  snap = miner_snapshots.load(url, "image_qa", (2,), a.fingerprint)[2]  # written as one object, read back
  assert_same_totals(snap, miner_snapshots.load(local, "image_qa", (2,), b.fingerprint)[2])
  with open(os.path.join(local, "miner_results.json"), "rb") as f, paths.open(url + "/miner_results.json", "rb") as g:
    assert g.read() == f.read()  # the same bytes as the local run's
  back = miner_task.load_results(url)
  assert back["results"] == json.loads(open(os.path.join(local, "miner_results.json")).read())
  assert back["sets"]["chosen"].mask.tolist() == miner_task.load_results(local)["sets"]["chosen"].mask.tolist()
  with paths.open(url + "/report.md") as f:
    assert f.read().startswith("# MINER run: demo/tiny-qwen2-vl")
  assert {"deactivation.json", "neurons", "plots", "scores.npz", "stats_snapshots"} <= set(paths.listdir(url))
  for name in ("sweep.json", "last_token.json", "semantics.json"):  # the optional stages write through io/paths too
    with open(os.path.join(local, name)) as f:
      assert paths.read_json(url + "/" + name) == json.load(f), name
  assert sorted(paths.listdir(url + "/plots")) == sorted(os.listdir(os.path.join(local, "plots")))


def test_readouts_on_a_memory_workdir_match_a_local_run(tmp_path):
  c = readouts_demo.get_config()
  c.stages = ("probes", "masks")  # tuned_lens (orbax translators) needs a local run directory
  c.data.domains = DOMAINS
  c.data.n_per_domain = c.probes.n_per_domain = 3
  c.probes.specs, c.probes.steps, c.probes.control_repeats = ("hidden:mean:domain",), 20, 1
  c.masks.n_per_domain = c.masks.eval_n_per_domain = 1
  c.masks.steps, c.masks.remat, c.masks.max_new_tokens = 2, False, 2
  local, url = str(tmp_path / "local"), "memory://readouts_test/run"
  tasks.run(c, local)
  tasks.run(c, url)
  for name in ("readouts.json", "config.json"):
    with open(os.path.join(local, name), "rb") as f, paths.open(paths.join(url, name), "rb") as g:
      assert g.read() == f.read(), name  # the same bytes as the local run's
  assert paths.listdir(url + "/neurons_learned") == sorted(os.listdir(os.path.join(local, "neurons_learned")))
  assert paths.listdir(url + "/plots") == sorted(os.listdir(os.path.join(local, "plots")))
