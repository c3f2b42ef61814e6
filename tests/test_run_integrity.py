"""Run integrity: a run directory's statistics resume only for identical inputs (else the run refuses
naming what differs, nothing on disk changed), the lock, config history, validation before any
model work, data checks, non-finite checks, readable one-line errors."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mmneuron_jax.configs import llava_next_demo, mmneuron_base
from mmneuron_jax import tasks
from mmneuron_jax.analysis import finite
from mmneuron_jax.data.sources import records as records_lib
from mmneuron_jax.data.synthetic import demo
from mmneuron_jax.errors import UserError
from mmneuron_jax.io import run_lock
from mmneuron_jax.io.stats_store import FingerprintMismatch, StatsStore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOMAINS = ("medical", "documents")


def stats_config():
  """Two domains, 3 samples each, stats only: a few seconds on a CPU."""
  c = llava_next_demo.get_config()
  c.model.demo_weights, c.data.source = "random", "demo"  # the checkpoint built in the workdir, seeded
  c.stages = ("stats",)
  c.data.domains = DOMAINS
  c.data.n_per_domain = 3
  c.stats.max_samples_per_domain = 3
  c.stats.batch_size = 2
  c.stats.commit_every = 1
  c.stats.prefetch = 0
  return c


def snapshot(workdir):
  """(state.json text, totals) of the run's statistics store, config.json text."""
  path = os.path.join(workdir, "stats")
  state = open(os.path.join(path, "state.json")).read()
  totals = StatsStore(path, json.loads(state)).totals()
  return state, totals, open(os.path.join(workdir, "config.json")).read()


def assert_unchanged(workdir, before):
  state, totals, config = snapshot(workdir)
  assert state == before[0] and config == before[2]
  assert sorted(totals) == sorted(before[1])
  for k in totals:
    np.testing.assert_array_equal(totals[k], before[1][k])  # bit-identical


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("integrity") / "run")
  tasks.run(stats_config(), workdir)
  return workdir


@pytest.fixture
def run_copy(finished, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(finished, workdir)
  return workdir, snapshot(workdir)


def test_identical_rerun_resumes_without_recomputation(run_copy):
  workdir, before = run_copy
  state = json.loads(before[0])
  assert state["cursor"] > 0 and set(state["fingerprint_fields"]) >= {
      "checkpoint", "records", "prompts", "batch plan", "stats.positions", "model.dtype", "statistic version"}
  tasks.run(stats_config(), workdir)
  assert_unchanged(workdir, before)  # same generation (no commit: nothing recomputed), same totals
  assert len(os.listdir(os.path.join(workdir, "configs"))) == 2  # each attempt's config kept


@pytest.mark.parametrize("change, field", [
    (lambda c: setattr(c.data, "seed", 1), "records"),  # other records (ids, images, questions)
    (lambda c: setattr(c.model, "seed", 1), "checkpoint"),  # the demo checkpoint is rebuilt
    (lambda c: setattr(c.stats, "positions", "image"), "stats.positions"),
    (lambda c: setattr(c.model, "attention", "fused"), "model.attention"),
])
def test_changed_inputs_refuse_naming_the_field(run_copy, change, field):
  workdir, before = run_copy
  c = stats_config()
  change(c)
  with pytest.raises(FingerprintMismatch, match=rf"these inputs differ: .*{field}.*--config.overwrite=True"):
    tasks.run(c, workdir)
  assert_unchanged(workdir, before)  # config.json still describes the statistics held
  assert len(os.listdir(os.path.join(workdir, "configs"))) == 2  # the refused attempt is kept


def test_overwrite_starts_afresh(run_copy):
  workdir, before = run_copy
  c = stats_config()
  c.stats.positions = "image"
  c.overwrite = True
  tasks.run(c, workdir)
  state, totals, config = snapshot(workdir)
  assert json.loads(state)["fingerprint_fields"]["stats.positions"] == "image"
  assert json.loads(config)["stats"]["positions"] == "image"
  assert totals["tokens/llm"].sum() < before[1]["tokens/llm"].sum()  # image tokens only


def test_second_run_refuses_while_locked(run_copy):
  workdir, before = run_copy
  with run_lock.locked(workdir):
    with pytest.raises(UserError, match=rf"another run is using this run directory \(pid {os.getpid()} on host "):
      tasks.run(stats_config(), workdir)
  assert_unchanged(workdir, before)
  tasks.run(stats_config(), workdir)  # released on exit


def test_lock_is_released_when_the_holder_dies(tmp_path):
  workdir = str(tmp_path / "w")
  code = ("import os, sys; sys.path.insert(0, %r); from mmneuron_jax.io import run_lock\n"
          "with run_lock.locked(%r): os._exit(1)" % (ROOT, workdir))
  subprocess.run([sys.executable, "-c", code], check=False)
  with run_lock.locked(workdir):
    pass


def test_every_config_problem_at_once_before_model_work(tmp_path):
  c = stats_config()
  c.stats.positions = "imag"
  c.stats.batch_size = 0
  c.dape.top_rate = 1.5
  c.eval.template = "vicuna"
  workdir = str(tmp_path / "w")
  with pytest.raises(UserError, match="4 problem") as e:
    tasks.run(c, workdir)
  for text in ("config.stats.positions='imag'", "config.stats.batch_size=0: expected > 0",
               "config.dape.top_rate=1.5: expected > 0 and <= 1", "config.eval.template='vicuna'"):
    assert text in str(e.value)
  assert not os.path.exists(os.path.join(workdir, "demo_checkpoint"))  # no model work
  assert not os.path.exists(os.path.join(workdir, "config.json"))
  assert len(os.listdir(os.path.join(workdir, "configs"))) == 1


def test_miner_options_are_validated():
  from mmneuron_jax.configs import miner_qwen2_vl_demo
  from mmneuron_jax.tasks.common import validate
  c = miner_qwen2_vl_demo.get_config()
  c.select.strategy = "LA-MU"
  c.select.ratio = 0.0
  c.scores.batch_size = -1
  with pytest.raises(UserError, match="3 problem") as e:
    validate.check(c)
  assert "config.select.strategy='LA-MU': expected one of ['LA_MU'" in str(e.value)


def test_single_domain_is_refused(tmp_path):
  c = stats_config()
  c.data.domains = ("medical",)
  with pytest.raises(UserError, match="at least 2 names.*entropy over a single domain"):
    tasks.run(c, str(tmp_path / "w"))


def test_unknown_domain_is_named_before_model_work(tmp_path):
  c = stats_config()
  c.data.domains = ("Medical", "documents")
  workdir = str(tmp_path / "w")
  with pytest.raises(UserError, match=r"no records for configured domain\(s\) 'Medical' \(the records have 'medical'\)"):
    tasks.run(c, workdir)
  assert not os.path.exists(os.path.join(workdir, "demo_checkpoint"))
  c.data.source = "skills"
  with pytest.raises(UserError, match=r"config.data.domains=.*unknown: \['Medical'\]"):
    tasks.run(c, workdir)


def _records_file(tmp_path, edit):
  path = demo.write_demo(str(tmp_path / "data"), n_per_domain=2)
  rows = [json.loads(line) for line in open(path)]
  with open(path, "w") as f:
    for i, row in enumerate(rows):
      f.write(json.dumps(edit(i, row)) + "\n")
  return path


def test_near_miss_column_is_refused_naming_the_fix(tmp_path):
  path = _records_file(tmp_path, lambda i, r: {**{k: v for k, v in r.items() if k != "answers"}, "answer": "x"})
  c = stats_config()
  c.data.source, c.data.path = "records", path
  with pytest.raises(UserError, match=r"column 'answer' is not a records field; rename it to 'answers'"):
    tasks.run(c, str(tmp_path / "w"))


def test_records_without_usable_answers_are_bad_for_eval(tmp_path):
  from mmneuron_jax.tasks.common import data_checks
  empties = [[], "", [""], None]  # None: no answers column in the row
  def edit(i, r):
    if i < len(empties):
      r = {k: v for k, v in r.items() if k != "answers"}
      if empties[i] is not None:
        r["answers"] = empties[i]
    return r
  recs = records_lib.read_records(_records_file(tmp_path, edit))
  good, bad = data_checks.unusable_answers(recs)
  assert [rid for rid, _ in bad] == [r.id for r in recs[:len(empties)]]
  assert all("no usable answer" in why and "evaluation needs one" in why for _, why in bad)
  assert [r.id for r in good] == [r.id for r in recs[len(empties):]]


def test_config_argument_parses_tuples_and_refuses_unknown_keys():
  c = mmneuron_base.apply_arg(mmneuron_base.get_config(),
                              "data.domains=medical,documents,stats.batch_size=4,eval.template='raw',overwrite=true")
  assert c.data.domains == ("medical", "documents") and c.stats.batch_size == 4
  assert c.eval.template == "raw" and c.overwrite is True
  c = mmneuron_base.apply_arg(mmneuron_base.get_config(), "data.domains=medical")
  assert c.data.domains == ("medical",)  # not ('m', 'e', ...)
  with pytest.raises(UserError, match="no field 'stats.bach_size'"):
    mmneuron_base.apply_arg(mmneuron_base.get_config(), "stats.bach_size=4")
  with pytest.raises(UserError, match="stats.batch_size='four': expected an integer"):
    mmneuron_base.apply_arg(mmneuron_base.get_config(), "stats.batch_size=four")


def test_non_finite_partials_name_module_layer_and_batch():
  partial = {"count/llm": np.zeros((3, 2, 4), np.int32), "sum/llm": np.zeros((3, 2, 4), np.float32)}
  finite.check_partial(partial, "batch 0")
  partial["sum/llm"][2, 1, 3] = np.nan
  partial["sum/llm"][1, 0, 0] = np.inf
  with pytest.raises(finite.NonFinite, match=r"module 'llm', layer 1 \(2 values of sum\), first at batch 7"):
    finite.check_partial(partial, "batch 7")


def test_probes_count_non_finite_activations_of_counted_tokens_only():
  """NaN > 0 is False: without the counter a NaN neuron reads as "never active"."""
  import jax.numpy as jnp
  from mmneuron_jax.analysis.miner_probe import MinerScores
  from mmneuron_jax.nn.probes import GroupStats
  from mmneuron_jax.tasks.miner.scores import MinerStatsProbe
  acts = np.ones((6, 4), np.float32)
  acts[1, 2], acts[3, 0], acts[4, 1] = np.nan, np.inf, np.nan  # token 4 is padding (group -1)
  groups = np.array([0, 0, 1, 1, -1, 1], np.int32)
  for dtype in (jnp.float32, jnp.bfloat16):
    out = GroupStats(jnp.asarray(groups), 2)(jnp.asarray(acts, dtype))
    assert int(out["nonfinite"]) == 2  # tokens 1 and 3; not the padded token 4
    assert int(out["count"][0, 2]) == 1  # the NaN token counted as inactive: why the counter is needed
  rng = np.random.default_rng(0)
  q, k = rng.normal(size=(1, 6, 2, 4)).astype(np.float32), rng.normal(size=(1, 6, 2, 4)).astype(np.float32)
  valid = (groups >= 0)[None]
  probe = MinerStatsProbe(MinerScores(np.ones((1, 2, 6), bool) & valid[:, None], valid))
  assert int(probe(jnp.asarray(acts[None]), q=q, k=k)["nonfinite"]) == 2
  from mmneuron_jax.nn.topk_probe import TopKProbe  # the atlas: only its columns (1, 2) are read
  row = np.where(groups >= 0, np.arange(6), -1).astype(np.int32)
  topk = TopKProbe(jnp.asarray(groups), jnp.arange(6, dtype=jnp.int32), jnp.zeros(6, jnp.int32), jnp.asarray(row),
                   jnp.array([1, 2], jnp.int32), jnp.array([0.0], jnp.float32), 2, 2, 6)
  assert int(topk(jnp.asarray(acts))["nonfinite"]) == 1  # token 1's column 2; token 3's Inf is in column 0


def test_non_finite_counters_name_module_layer_and_batch_without_sums():
  partial = {"count/llm": np.zeros((3, 2, 4), np.int32), "nonfinite/llm": np.array([0, 0, 0], np.int32),
             "nonfinite/vision": np.array([0, 0], np.int32)}
  finite.check_partial(partial, "batch 0")
  partial["nonfinite/llm"] = np.array([0, 3, 5], np.int32)
  with pytest.raises(finite.NonFinite, match=r"module 'llm', layer 1 \(3 values; 8 in all its layers\), first at batch 4"):
    finite.check_partial(partial, "batch 4")
  partial["nonfinite/vision"] = np.array([0, 2], np.int32)  # a tower feeds the LLM: named first
  with pytest.raises(finite.NonFinite, match=r"module 'vision', layer 1 \(2 values; 2 in all its layers\); "
                                             r"also module 'llm' from layer 1, first at batch 4"):
    finite.check_partial(partial, "batch 4")
  partial = {"nonfinite/llm": np.zeros(3, np.int32), "sumsq/llm": np.full((3, 2, 4), np.inf, np.float32)}
  with pytest.raises(finite.NonFinite, match=r"non-finite sumsq .* layer 0 .*from finite activations: the float32 statistic overflowed"):
    finite.check_partial(partial, "batch 0")


def _nan_checkpoint(finished, tmp_path):
  from safetensors.numpy import load_file, save_file
  src = os.path.join(finished, "demo_checkpoint")
  dst = str(tmp_path / "nan_ckpt")
  shutil.copytree(src, dst)
  file = os.path.join(dst, "model.safetensors")
  tensors = load_file(file)
  name = next(k for k in sorted(tensors) if "layers.1." in k and "mlp.gate_proj" in k)
  tensors[name] = np.full_like(tensors[name], np.nan)
  save_file(tensors, file)
  return dst, name


def test_nan_weights_are_refused_at_load_then_in_the_statistics(finished, tmp_path):
  path, name = _nan_checkpoint(finished, tmp_path)
  c = stats_config()
  c.model.path = path
  workdir = str(tmp_path / "w")
  with pytest.raises(finite.NonFinite, match=r"weight llm/layers/.* holds NaN/Inf values \(stacked per layer: layer 1 first\)"):
    tasks.run(c, workdir)
  c.model.check_weights = False
  with pytest.raises(finite.NonFinite, match=r"non-finite activations \(NaN/Inf\) in module 'llm', layer 1 \(\d+ values; "
                                             r"\d+ in all its layers\), first at batch 0 \(0-based\) of the statistics, "
                                             r"domain 'medical', records \["):
    tasks.run(c, workdir)
  assert json.load(open(os.path.join(workdir, "stats", "state.json")))["cursor"] == 0  # nothing counted


def test_checkpoint_read_errors_name_the_file(finished, tmp_path):
  from mmneuron_jax.api import load_hf
  from mmneuron_jax.errors import CheckpointError
  src = os.path.join(finished, "demo_checkpoint")
  for damage, message in [("truncate", "truncated"), ("random", "not a safetensors file, or truncated"),
                          ("config", "config.json: malformed checkpoint config.json")]:
    path = str(tmp_path / damage)
    shutil.copytree(src, path)
    weights = os.path.join(path, "model.safetensors")
    if damage == "truncate":
      data = open(weights, "rb").read()
      open(weights, "wb").write(data[:len(data) // 2])
    elif damage == "random":
      open(weights, "wb").write(np.random.default_rng(0).bytes(4096))
    else:
      open(os.path.join(path, "config.json"), "w").write('{"model_type": "llava_next",')
    with pytest.raises(CheckpointError, match=message) as e:
      load_hf(path)
    assert path in str(e.value)


def _main(args, tmp_path):
  env = dict(os.environ, HF_HUB_OFFLINE="1", JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, os.path.join(ROOT, "launch", "main.py"), *args,
                         f"--workdir={tmp_path / 'w'}"], env=env, cwd=ROOT, capture_output=True, text=True)


def test_user_errors_print_one_block_without_traceback(tmp_path):
  out = _main(["--config=configs/nope.py"], tmp_path)
  assert out.returncode == 2 and "Traceback" not in out.stderr
  assert "error: --config=configs/nope.py: no such file" in out.stderr
  out = _main([f"--config={ROOT}/mmneuron_jax/configs/llava_next_demo.py", "--config.stats.positions=imag",
               "--config.stats.batch_size=0"], tmp_path)
  assert out.returncode == 2 and "Traceback" not in out.stderr
  assert "config.stats.positions='imag'" in out.stderr and "config.stats.batch_size=0" in out.stderr


def test_library_misuse_is_refused_before_jit(finished):
  from mmneuron_jax.api import load_hf
  from mmneuron_jax.models import input_checks
  from mmneuron_jax.nn.logit_lens import Lens
  model = load_hf(os.path.join(finished, "demo_checkpoint"))
  vocab = model.config["text_config"]["vocab_size"]
  ids = np.ones((2, 5), np.int32)
  for batch, message in [
      ({"input_ids": ids[0]}, r"input_ids'\] has shape \(5,\); expected int\[B, T\]"),
      ({"input_ids": ids * vocab}, rf"token id {vocab} >= the vocabulary size {vocab}"),
      ({"input_ids": -ids}, "negative token id -1"),
      ({"input_ids": ids, "attention_mask": ids[:, :4]}, r"attention_mask'\] has shape \(2, 4\); expected \(2, 5\)"),
      ({"input_ids": ids, "pixel_values": np.zeros((2, 3, 7, 7), np.float32)}, r"pixel_values'\] has shape"),
  ]:
    with pytest.raises(ValueError, match=message):
      model.apply(model.params, batch)
  for positions, message in [(np.array([[0, 5]] * 2), r"holds 5; positions must be in \[0, 5\)"),
                             (np.array([[0.0, 1.5]] * 2), "expected integer token indices")]:
    with pytest.raises(ValueError, match=message):
      model.apply(model.params, {"input_ids": ids}, lens=Lens(positions=positions))
  assert input_checks.capture_names("llm") == ("llm",)
  with pytest.raises(KeyError, match="capture 'l': unknown module"):
    model.check_capture(["l"])
  model.check_capture("llm")  # one module as a string, not letter by letter


def test_generate_takes_right_padded_prompts():
  from mmneuron_jax.models import input_checks
  right = {"input_ids": np.array([[5, 6, 7], [8, 9, 0]]), "attention_mask": np.array([[1, 1, 1], [1, 1, 0]])}
  left = input_checks.left_padded(right)
  np.testing.assert_array_equal(left["input_ids"], [[5, 6, 7], [0, 8, 9]])
  np.testing.assert_array_equal(left["attention_mask"], [[1, 1, 1], [0, 1, 1]])
  assert input_checks.left_padded(left) is left  # already left-padded: unchanged


# The command line of `stats_config()` (4 batches; the `finished` fixture is the same run, uninterrupted).
STATS_FLAGS = ["--config=llava_next_demo", "--config.model.demo_weights=random", "--config.data.source=demo",
               "--config.stages=('stats',)", "--config.data.domains=('medical','documents')",
               "--config.data.n_per_domain=3", "--config.stats.max_samples_per_domain=3",
               "--config.stats.batch_size=2", "--config.stats.commit_every=1", "--config.stats.prefetch=0"]
# The CLI, each batch's host addition slowed by 0.3 s (numbers unchanged): a window for Ctrl-C that does
# not depend on the machine's speed.
SLOW_CLI = ("import sys, time\n"
            "from mmneuron_jax.io import accumulate as a\n"
            "add = a.add_totals\n"
            "a.add_totals = lambda t, p: (time.sleep(0.3), add(t, p))[1]\n"
            "from mmneuron_jax.cli import main\n"
            "sys.exit(main(['mmneuron'] + sys.argv[1:]))")


def _cursor(workdir):
  try:
    return json.load(open(os.path.join(workdir, "stats", "state.json")))["cursor"]
  except (OSError, ValueError, KeyError):
    return 0


def test_ctrl_c_says_where_progress_was_committed_and_the_rerun_resumes_bit_identical(finished, tmp_path):
  env = dict(os.environ, HF_HUB_OFFLINE="1", JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  workdir = str(tmp_path / "interrupted")
  command = [sys.executable, "-c", SLOW_CLI, *STATS_FLAGS, f"--workdir={workdir}"]
  proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 1200
  while _cursor(workdir) < 1 and proc.poll() is None and time.time() < deadline:
    time.sleep(0.01)
  assert proc.poll() is None, "the statistics run ended before it could be interrupted: " + proc.communicate()[1][-2000:]
  assert _cursor(workdir) >= 1, "no batch committed within 20 minutes"
  proc.send_signal(signal.SIGINT)
  err = proc.communicate(timeout=120)[1]
  at_interrupt = _cursor(workdir)
  assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
  assert 1 <= at_interrupt < 4
  assert (f"interrupted. Progress committed in {workdir}: stats at batch {at_interrupt}. "
          "Rerun the same command to resume.") in err
  out = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  assert f"resuming {os.path.join(workdir, 'stats')} at cursor {at_interrupt}" in out.stderr
  a, b = snapshot(workdir), snapshot(finished)  # `finished`: the same run, uninterrupted, in this process
  assert json.loads(a[0])["fingerprint_fields"] == json.loads(b[0])["fingerprint_fields"]
  assert json.loads(a[0])["cursor"] == json.loads(b[0])["cursor"] == 4
  assert sorted(a[1]) == sorted(b[1])
  for name in a[1]:
    assert a[1][name].dtype == b[1][name].dtype
    np.testing.assert_array_equal(a[1][name], b[1][name], err_msg=name)  # bit-identical


def test_miner_nan_activations_refuse_naming_module_layer_and_batch(tmp_path):
  """MINER's stage-2 step: NaN weights in LLM layer 1 (0-based) stop the batch, naming where, though
  the min-max scores would hide NaN activations."""
  import jax
  import mmneuron_jax
  from mmneuron_jax.configs import miner_qwen2_vl_demo
  from mmneuron_jax.data.synthetic import miner_demo
  from mmneuron_jax.tasks.miner import inputs as miner_inputs, scores as miner_scores
  samples = miner_demo.demo_dataset("image_qa", 2)
  path = str(tmp_path / "qwen2_vl")
  miner_inputs.demo_builder("qwen2_vl")(path, miner_demo.texts(samples), seed=0)
  model, inputs = mmneuron_jax.load_hf(path), miner_inputs.family_inputs("qwen2_vl", path)

  def poison(keys, x):
    keys = [str(getattr(k, "key", k)) for k in keys]
    if keys[:2] != ["llm", "layers"] or "gate" not in keys or keys[-1] != "kernel":
      return x
    x = np.array(x)  # [L, D, F]: layer 1's gate
    x[1] = np.nan
    return x

  params = jax.tree_util.tree_map_with_path(poison, model.params)
  assert sum(bool(np.isnan(np.asarray(x, np.float32)).any()) for x in jax.tree_util.tree_leaves(params)) == 1
  cfg = miner_qwen2_vl_demo.get_config().scores
  cfg.batch_size, cfg.grad = 2, False
  batches = miner_scores.plan(len(samples), cfg.batch_size)
  step = miner_scores.make_step_fn(model, params, inputs, samples, ("text", "special", "image", "video"),
                                   inputs.token_ids(), cfg, len(batches), dataset="image_qa")
  with pytest.raises(finite.NonFinite, match=r"module 'llm', layer 1 \(\d+ values; \d+ in all its layers\), "
                                             r"first at batch 0 \(0-based\) of dataset 'image_qa'"):
    step(batches[0])
  step = miner_scores.make_step_fn(model, model.params, inputs, samples, ("text", "special", "image", "video"),
                                   inputs.token_ids(), cfg, len(batches), dataset="image_qa")
  assert np.isfinite(step(batches[0])["score_sum"]).all()  # the intact weights pass
