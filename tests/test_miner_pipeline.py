"""The MINER task on the embedded demo (tiny Qwen2-VL, synthetic image / text samples):
a smoke run through `tasks.run` whose outputs are checked against plain-numpy recomputations
(stage 3 from the stored sums, stage 4 budgets per strategy), the affine 'min' deactivation, and
a stage-2 run SIGKILLed midway that resumes to sums bit-identical to an uninterrupted run, and the
optional atlas stage's per-modality maxima recomputed from one plain forward pass."""
import csv
import glob
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mmneuron_jax.configs import miner_qwen2_vl_demo
from mmneuron_jax import tasks
from mmneuron_jax.analysis import miner
from mmneuron_jax.analysis.neuron_sets import NeuronSet
from mmneuron_jax.io.stats_store import StatsStore
from mmneuron_jax.tasks import miner as miner_task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Small overrides: 4 samples per dataset in batches of 2 (2 batches each), no gradient score,
# short generations, the image and text sets (video: tests/test_miner_video.py). image_qa and caption
# share compiled shapes; text_mc adds one more.
OVERRIDES = {"data.datasets": ("image_qa", "caption", "text_mc"), "data.n_per_dataset": 4, "scores.batch_size": 2,
             "scores.grad": False, "deactivate.n_per_dataset": 2, "deactivate.max_new_tokens": 3, "deactivate.conditions": ("none", "all", "image", "random")}


def small_config():
  c = miner_qwen2_vl_demo.random_demo(miner_qwen2_vl_demo.get_config())
  for key, value in OVERRIDES.items():
    node, leaf = key.split(".")
    c[node][leaf] = value
  c.sweep.ratios, c.sweep.weights = (0.02, 0.05), ("mean", "default")  # the optional sweep: a short grid here
  c.stages = tuple(c.stages) + ("atlas",)  # and the optional neuron atlas of the chosen set
  return c


def scores_command(workdir):
  flags = [f"--config.{k}={v}" for k, v in OVERRIDES.items() if k.startswith(("data.", "scores."))]
  return [sys.executable, "-m", "mmneuron_jax",
          "--config=miner_qwen2_vl_demo", f"--workdir={workdir}",
          "--config.stages=('scores',)", "--config.model.demo_weights=random", "--config.data.source=demo",
          "--config.select.ratio=0.05", *flags]


def cursor(workdir, dataset):
  try:
    with open(os.path.join(workdir, "stats", dataset, "state.json")) as f:
      return json.load(f)["cursor"]
  except (OSError, ValueError, KeyError):
    return 0


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  """A stage-2 run SIGKILLed after its first committed batch, then the whole study run in-process
  in the same directory (resuming stage 2), with value='min' deactivation."""
  workdir = str(tmp_path_factory.mktemp("miner") / "run")
  env = dict(os.environ, HF_HUB_OFFLINE="1", JAX_PLATFORMS="cpu")
  proc = subprocess.Popen(scores_command(workdir), env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  while cursor(workdir, "image_qa") < 1 and proc.poll() is None and time.time() < deadline:
    time.sleep(0.01)
  assert proc.poll() is None, "the scores run ended before it could be killed"
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  assert cursor(workdir, "text_mc") < 2, "killed after the end"
  config = small_config()
  config.deactivate.value = "min"
  report = tasks.run(config, workdir)
  assert report == os.path.join(workdir, "report.md")
  return workdir


@pytest.fixture(scope="module")
def model_inputs(run_dir):
  import mmneuron_jax
  from mmneuron_jax.tasks.miner import inputs as miner_inputs
  path = os.path.join(run_dir, "demo_checkpoint")
  return mmneuron_jax.load_hf(path), miner_inputs.family_inputs("qwen2_vl", path)


def stored_totals(workdir, dataset):
  path = os.path.join(workdir, "stats", dataset)
  return StatsStore(path, json.load(open(os.path.join(path, "state.json")))).totals()


def test_report_plots_and_files(run_dir):
  text = open(os.path.join(run_dir, "report.md")).read()
  for section in ("**Protocol.**", "## Headline", "## Data", "## Scores", "## Selected neurons",
                  "### Overlap of every modality combination per layer", "## Deactivation"):
    assert section in text
  assert text.index("**Protocol.**") < text.index("## Headline") < text.index("## Data")  # the report opens with them
  plots = set(os.listdir(os.path.join(run_dir, "plots")))
  assert plots == {"scores_by_layer.png", "neurons_per_layer.png", "overlap.png", "deactivation.png",
                   "sweep_grid.png", "sweep_samples.png", "last_token.png", "semantics_shares.png",
                   "semantics_pca.png"}  # + the optional stages
  for name in plots:
    assert open(os.path.join(run_dir, "plots", name), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
  loaded = miner_task.load_results(run_dir)
  assert set(loaded["sets"]) == set(miner.STRATEGIES) | {"chosen"}
  assert loaded["scores"]["combined"].shape == (3, 3, 128)
  assert os.path.getsize(os.path.join(run_dir, "neurons", "llm.pt")) > 0


def test_budgets_per_strategy(run_dir):
  results = json.load(open(os.path.join(run_dir, "miner_results.json")))
  names = results["modalities"]
  assert names == ["text", "special", "image"]  # video / audio never occur in these datasets
  M, L, F = len(names), results["layers"], results["width"]
  K = int(0.05 * L * F)
  assert results["K"] == K == 19
  sets = {s: NeuronSet.load(os.path.join(run_dir, "neurons", "strategies", f"llm_{s}.json")) for s in miner.STRATEGIES}
  for s, ns in sets.items():
    assert ns.group_names == names and ns.sizes() == results["strategies"][s]["sizes"], s
  assert all(n == K // M for n in sets["LA_MU"].sizes().values())
  assert (sets["LU_MA"].mask.sum(axis=(0, 2)) == K // L).all()
  adaptive = sets["adaptive"].mask
  assert adaptive.sum() == K and adaptive.sum(0).max() == 1  # disjoint
  assert (sets["uniform"].mask.sum(-1) == K // (M * L)).all()
  rand = sets["random"].mask
  assert (rand == rand[:1]).all() and 0 < rand[0].sum() <= K
  chosen = NeuronSet.load(os.path.join(run_dir, "neurons", "llm.json"))
  np.testing.assert_array_equal(chosen.mask, sets["LA_MU"].mask)
  overlap = np.asarray(results["overlap"]["per_layer"])
  np.testing.assert_array_equal(overlap, np.einsum("alf,blf->abl", chosen.mask.astype(int), chosen.mask.astype(int)))
  flat = chosen.mask.reshape(len(chosen.mask), -1)  # Jaccard over all layers, |A & B| / |A | B|, in plain numpy
  want = [[(a & b).sum() / max((a | b).sum(), 1) for b in flat] for a in flat]
  np.testing.assert_allclose(results["overlap"]["jaccard"], want, rtol=1e-12)


def test_headline_protocol_and_combination_overlap(run_dir):
  """Headline = plain mean over benchmarks of `primary` per condition; the protocol records what ran;
  the combination table's singles and pairs equal the pairwise overlap table."""
  results = json.load(open(os.path.join(run_dir, "miner_results.json")))
  rows = results["deactivation"]
  for h in results["headline"]:
    vals = [r["primary"] for r in rows if r["condition"] == h["condition"]]
    assert h["n_benchmarks"] == len(vals) == 3 and abs(h["mean"] - sum(vals) / len(vals)) < 1e-12
  none = next(h["mean"] for h in results["headline"] if h["condition"] == "none")
  assert all(abs(h["vs_none"] - (h["mean"] - none)) < 1e-12 for h in results["headline"])
  p = results["protocol"]
  assert p["samples"] == {d: {"scored": 4, "evaluated": 2} for d in ("image_qa", "caption", "text_mc")}
  assert not p["full_sets"] and p["dtype"] == "float32" and p["generation_source"] == "config"
  assert p["generation"] == {"do_sample": False, "temperature": 1.0, "top_k": 0, "top_p": 1.0,
                             "repetition_penalty": 1.0}
  assert p["modalities"] == results["modalities"] and p["left_out"] == []
  assert p["processor"]["min_pixels"] == 56 * 56 and p["processor"]["video_frames"] == "authors"
  names, per_layer = results["modalities"], np.asarray(results["overlap"]["per_layer"])
  combos = results["overlap"]["combinations"]
  assert len(combos) == 2 ** len(names) - 1
  for i, a in enumerate(names):
    assert combos[a] == per_layer[i, i].tolist()
    for j in range(i + 1, len(names)):
      assert combos[f"{a}-{names[j]}"] == per_layer[i, j].tolist()


def test_stage3_and_selection_match_numpy(run_dir):
  """Dataset means, cross-dataset means (over datasets where the modality occurs), the default
  weights and LA_MU, recomputed in numpy from the stored per-dataset sums."""
  results = json.load(open(os.path.join(run_dir, "miner_results.json")))
  totals = {d: stored_totals(run_dir, d) for d in results["datasets"]}
  for d, t in totals.items():
    assert int(t["samples"][0]) == results["datasets"][d]["samples"] == 4
  total, count = 0.0, 0
  for t in totals.values():
    mean = t["score_sum"] / t["samples"][0]                   # [5, M, L, F]
    present = t["present"] > 0
    total = total + mean * present[None, :, None, None]
    count = count + present
  agg = total / np.maximum(count, 1)[None, :, None, None]
  combined = (0.25 * agg[1] + 0.25 * agg[2] + 0.5 * agg[3])[count > 0]  # modalities that occur (not video)
  with np.load(os.path.join(run_dir, "scores.npz")) as z:
    np.testing.assert_allclose(z["combined"], combined, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(z["aggregated"], agg, rtol=1e-6, atol=1e-7)
  M, L, F = combined.shape
  per = int(0.05 * L * F) // M
  chosen = NeuronSet.load(os.path.join(run_dir, "neurons", "llm.json")).mask
  for m in range(M):
    flat = combined[m].reshape(-1).astype(np.float32)
    top = np.argsort(-flat, kind="stable")[:per]
    np.testing.assert_array_equal(np.flatnonzero(chosen[m].reshape(-1)), np.sort(top))
  text_mc = totals["text_mc"]
  assert text_mc["present"][2] == 0 and not text_mc["score_sum"][:, 2].any()  # no image in text-only samples
  assert (np.isfinite(text_mc["layer_min"]) & (text_mc["layer_min"] < 0)).all()  # SiLU minima


def test_deactivation_rows(run_dir):
  rows = json.load(open(os.path.join(run_dir, "deactivation.json")))["rows"]
  assert [(r["dataset"], r["condition"]) for r in rows] == [
      (d, c) for d in ("image_qa", "caption", "text_mc") for c in ("none", "all", "image", "random")]
  chosen = NeuronSet.load(os.path.join(run_dir, "neurons", "llm.json"))
  union = int(chosen.mask.any(0).sum())
  for r in rows:
    want = {"none": 0, "all": union, "random": union, "image": chosen.sizes()["image"]}[r["condition"]]
    assert r["neurons_off"] == want and r["n"] == 2 and 0.0 <= r["primary"] <= 1.0


def test_min_value_masks(run_dir, model_inputs):
  """value='min': the selected neurons read their layer's stage-2 minimum at every position
  (captured neurons), and the identity affine mask (1, 0) of 'none' generates what no mask does."""
  from mmneuron_jax.data.synthetic import miner_demo
  from mmneuron_jax.tasks.miner import deactivation as miner_deactivation
  from mmneuron_jax.tasks.miner.inputs import pad_to
  model, inputs = model_inputs
  results = json.load(open(os.path.join(run_dir, "miner_results.json")))
  chosen = NeuronSet.load(os.path.join(run_dir, "neurons", "llm.json"))
  layer_min = np.asarray(results["layer_min"])
  totals = [stored_totals(run_dir, d)["layer_min"] for d in results["datasets"]]
  np.testing.assert_array_equal(layer_min, np.concatenate(totals).min(0))
  scale, offset = miner_deactivation.condition_masks("all", chosen.mask, chosen.group_names, "min", layer_min, 0)
  off = chosen.mask.any(0)
  np.testing.assert_array_equal(scale, np.where(off, 0.0, 1.0))
  np.testing.assert_allclose(offset, np.where(off, layer_min[:, None], 0.0).astype(np.float32))
  samples = miner_demo.demo_dataset("image_qa", 2)
  batch = inputs.batch(samples, "right")
  out = model.forward_step(capture=("llm",))(model.params, model.device_batch(batch), {"llm": (scale, offset)},
                                               None, None)
  acts = np.asarray(out.aux["llm"])                             # [L, B, T, F]
  valid = batch["attention_mask"].astype(bool)
  for l in range(acts.shape[0]):
    np.testing.assert_allclose(acts[l][valid][:, off[l]], np.full((valid.sum(), off[l].sum()), layer_min[l]),
                               rtol=1e-6)
  predictions = json.load(open(os.path.join(run_dir, "deactivation.json")))["predictions"]
  left, _ = pad_to(inputs.batch(samples, "left"), None, 32, inputs.pad_id, "left")  # as the run pads
  plain = model.generate(model.params, left, max_new_tokens=3, eos_token_id=inputs.eos_ids(),
                         pad_token_id=inputs.pad_id)
  assert inputs.decode(np.where(plain == inputs.pad_id, -1, plain)) == predictions["image_qa|none"]


def test_killed_scores_run_resumed_bit_identical(run_dir, model_inputs):
  """The resumed per-dataset sums equal an uninterrupted in-process recomputation (every batch's
  partial sums added in order, no store) bit for bit: nothing lost, nothing counted twice."""
  from mmneuron_jax.data.synthetic import miner_demo
  from mmneuron_jax.tasks.miner import scores as miner_scores
  model, inputs = model_inputs
  config = small_config()
  modalities = ("text", "special", "image", "video")
  for dataset in ("image_qa", "caption"):  # the interrupted one, and one run after the resume
    samples = miner_demo.demo_dataset(dataset, 4)
    batches = miner_scores.plan(len(samples), config.scores.batch_size)
    step = miner_scores.make_step_fn(model, model.params, inputs, samples, modalities, inputs.token_ids(),
                                     config.scores, len(batches))
    stored = stored_totals(run_dir, dataset)
    want = {k: np.zeros_like(v) for k, v in stored.items()}
    for b in batches:
      want = {k: want[k] + np.asarray(v).astype(want[k].dtype) for k, v in step(b).items()}
    assert sorted(want) == sorted(stored)
    for name in want:
      np.testing.assert_array_equal(stored[name], want[name], err_msg=f"{dataset}/{name}")


# ----------------------------------------------------------------------------- optional stages (on in the demo)

def test_sweep_reuses_the_run(run_dir, model_inputs):
  """sweep.json: the strategy grid equals the run's own selection per strategy, the base point's
  deactivation equals the deactivation stage's 'all' rows (same sets, samples, value), its 'none'
  the stage's 'none'; snapshots hold the first batch's sums and the final sums."""
  from mmneuron_jax.data.synthetic import miner_demo
  from mmneuron_jax.tasks.miner import scores as miner_scores
  sweep = json.load(open(os.path.join(run_dir, "sweep.json")))
  results = json.load(open(os.path.join(run_dir, "miner_results.json")))
  rows = json.load(open(os.path.join(run_dir, "deactivation.json")))["rows"]
  for r in sweep["grid"]:
    if r["axis"] == "strategy":
      assert r["sizes"] == results["strategies"][r["strategy"]]["sizes"], r["key"]
  base = [r for r in sweep["grid"] if r["key"] == "0.05|default|LA_MU"]
  assert len(base) == 3 and all(r["jaccard_vs_chosen"]["union"] == 1.0 for r in base)
  for r in rows:
    if r["condition"] in ("none", "all"):
      got = sweep["none"][r["dataset"]] if r["condition"] == "none" else base[0]["deactivation"][r["dataset"]]
      assert got["primary"] == r["primary"] and got["n"] == r["n"], (r["dataset"], r["condition"])
      assert got.get("changed_vs_none") == r.get("changed_vs_none"), (r["dataset"], r["condition"])
  assert [x["samples"] for x in sweep["samples"]] == [2, 4]
  assert all(v == 1.0 for v in sweep["samples"][1]["jaccard"].values())  # 4 samples = the final sums
  model, inputs = model_inputs
  config = small_config()
  samples = miner_demo.demo_dataset("caption", 4)
  batches = miner_scores.plan(4, config.scores.batch_size, (2, 4))
  step = miner_scores.make_step_fn(model, model.params, inputs, samples, ("text", "special", "image", "video"),
                                   inputs.token_ids(), config.scores, len(batches))
  first = step(batches[0])
  with np.load(os.path.join(run_dir, "stats_snapshots", "caption", "n_00000002.npz")) as z:
    np.testing.assert_array_equal(z["score_sum"], np.asarray(first["score_sum"], np.float64))
  with np.load(os.path.join(run_dir, "stats_snapshots", "caption", "n_00000004.npz")) as z:
    np.testing.assert_array_equal(z["score_sum"], stored_totals(run_dir, "caption")["score_sum"])


def test_last_token_and_semantics(run_dir):
  """last_token.json: conditions none / each modality / all; masses over the token partition sum to
  1; semantics.json: nearest-neighbour shares per layer sum to 1 over the modalities that occur."""
  res = json.load(open(os.path.join(run_dir, "last_token.json")))
  assert res["conditions"] == ["none", "text", "special", "image", "all"]
  part = [res["modalities"].index(m) for m in ("text", "special", "image", "video")]
  for d, r in res["datasets"].items():
    assert r["n"] == 4
    for c in res["conditions"]:
      mass = np.asarray(r["mass"][c])
      assert mass.shape == (3, len(res["modalities"]))
      np.testing.assert_allclose(mass[:, part].sum(-1), 1.0, atol=1e-5, err_msg=f"{d}/{c}")
  assert res["datasets"]["text_mc"]["present"]["image"] == 0
  sem = json.load(open(os.path.join(run_dir, "semantics.json")))
  assert sem["modalities"] == ["text", "special", "image", "video", "audio"]
  for d, r in sem["datasets"].items():
    shares = np.asarray(r["shares"], float)                       # [L, A, A], None -> nan
    assert shares.shape == (3, 5, 5) and r["n"] == 4
    present = np.asarray([r["tokens"][m] > 0 for m in sem["modalities"]])
    np.testing.assert_allclose(np.nansum(shares, -1)[:, present], 1.0, atol=1e-12)
    assert np.isnan(shares[:, ~present]).all()
  assert sem["datasets"]["text_mc"]["tokens"]["image"] == 0 and sem["datasets"]["image_qa"]["tokens"]["image"] > 0


# ----------------------------------------------------------------------------- CSV tables beside the JSON

def same(cell: str, value) -> bool:
  """A CSV cell holds the JSON value exactly (floats round-trip; None is empty; a list is its JSON text)."""
  if value is None:
    return cell == ""
  if isinstance(value, (bool, str)):
    return cell == str(value)
  if isinstance(value, (int, float)):
    return float(cell) == value or (math.isnan(value) and math.isnan(float(cell)))
  return json.loads(cell) == value


def read_csv(run_dir, name):
  with open(os.path.join(run_dir, name), newline="") as f:
    return list(csv.DictReader(f))


def test_tables_as_csv_hold_the_json_numbers(run_dir):
  """Every table of the run's JSON results also as CSV beside it, cell for cell the JSON's values."""
  rows = json.load(open(os.path.join(run_dir, "deactivation.json")))["rows"]
  table = read_csv(run_dir, "deactivation.csv")
  assert len(table) == len(rows) and all(same(t[k], v) for t, r in zip(table, rows) for k, v in r.items())
  results = json.load(open(os.path.join(run_dir, "miner_results.json")))
  table = read_csv(run_dir, "miner_results.headline.csv")
  assert len(table) == len(results["headline"])
  assert all(same(t[k], v) for t, h in zip(table, results["headline"]) for k, v in h.items())
  table = {t["dataset"]: t for t in read_csv(run_dir, "miner_results.datasets.csv")}
  for d, v in results["datasets"].items():
    assert same(table[d]["samples"], v["samples"]) and same(table[d]["bad"], v["bad"])
    assert all(same(table[d][f"present.{m}"], x) and same(table[d][f"tokens.{m}"], v["tokens"][m])
               for m, x in v["present"].items())
  table = {t["strategy"]: t for t in read_csv(run_dir, "miner_results.strategies.csv")}
  assert set(table) == set(results["strategies"])
  for s, v in results["strategies"].items():
    assert same(table[s]["union"], v["union"]) and all(same(table[s][f"sizes.{m}"], n) for m, n in v["sizes"].items())
  table = read_csv(run_dir, "miner_results.overlap.csv")
  combos = results["overlap"]["combinations"]
  assert [int(t["layer"]) for t in table] == list(range(len(results["layer_min"])))
  assert all(same(t[c], v[int(t["layer"])]) for t in table for c, v in combos.items())
  sweep = json.load(open(os.path.join(run_dir, "sweep.json")))
  table = read_csv(run_dir, "sweep.grid.csv")
  assert len(table) == len(sweep["grid"])
  for t, r in zip(table, sweep["grid"]):
    assert same(t["key"], r["key"]) and same(t["K"], r["K"]) and same(t["jaccard_vs_chosen.union"],
                                                                      r["jaccard_vs_chosen"]["union"])
    assert all(same(t[f"deactivation.{d}.{k}"], x) for d, v in r["deactivation"].items() for k, x in v.items())
  assert all(same(t[k], sweep["none"][t["dataset"]][k]) for t in read_csv(run_dir, "sweep.none.csv")
             for k in sweep["none"][t["dataset"]])
  assert [int(t["samples"]) for t in read_csv(run_dir, "sweep.samples.csv")] == [x["samples"] for x in sweep["samples"]]
  res = json.load(open(os.path.join(run_dir, "last_token.json")))
  table = read_csv(run_dir, "last_token.csv")
  assert len(table) == sum(len(r["mass"][c]) for r in res["datasets"].values() for c in res["conditions"])
  for t in table:
    mass = res["datasets"][t["dataset"]]["mass"][t["condition"]][int(t["layer"])]
    assert all(same(t[f"mass.{m}"], x) for m, x in zip(res["modalities"], mass))
  sem = json.load(open(os.path.join(run_dir, "semantics.json")))
  table = read_csv(run_dir, "semantics.csv")
  mods = sem["modalities"]
  assert len(table) == sum(len(r["shares"]) * len(mods) for r in sem["datasets"].values())
  for t in table:
    r, a = sem["datasets"][t["dataset"]], mods.index(t["modality"])
    assert all(same(t[f"share.{b}"], r["shares"][int(t["layer"])][a][j]) and same(t[f"chance.{b}"], r["chance"][a][j])
               for j, b in enumerate(mods))



def test_atlas_pages_hold_each_chosen_neurons_max_per_modality(run_dir, model_inputs):
  """The optional atlas stage: a page per neuron of the chosen set, 'member' = the modalities whose set
  holds it, and per modality the neuron's largest activation over that modality's tokens of every
  sample: recomputed here from one forward pass over all samples, a token's modality read from its id
  (image / special ids from miner_results.json, text otherwise)."""
  from mmneuron_jax.tasks.atlas import site
  from mmneuron_jax.tasks.miner import data as miner_data, inputs as miner_inputs
  model, inputs = model_inputs
  results = json.load(open(os.path.join(run_dir, "miner_results.json")))
  names, ids = results["modalities"], results["token_ids"]
  assert names == ["text", "special", "image"]
  chosen = NeuronSet.load(os.path.join(run_dir, "neurons", "llm.json"))
  pages = {(p["layer"], p["index"]): p for p in
           map(site.read_page_data, glob.glob(os.path.join(run_dir, "atlas", "n", "llm_*.html")))}
  assert set(pages) == {(int(l), int(f)) for l, f in zip(*np.nonzero(chosen.mask.any(0)))}
  for (l, f), p in pages.items():
    assert p["group_names"] == names and p["member"] == [names[g] for g in np.flatnonzero(chosen.mask[:, l, f])]
  samples, _, _ = miner_data.load(small_config(), miner_inputs.spec_for("qwen2_vl").takes)
  rows = [s for v in samples.values() for s in v]
  batch = model.prepare(inputs.batch(rows, "right"))
  acts = np.asarray(model.apply(model.params, batch, capture=("llm",)).aux["llm"])  # [L, B, T, F]
  tokens, valid = np.asarray(batch["input_ids"]), np.asarray(batch["attention_mask"]) != 0
  group = np.where(np.isin(tokens, ids["image"]), 2, np.where(np.isin(tokens, ids["special"]), 1, 0))
  for (l, f), p in pages.items():
    want = [float(acts[l, :, :, f][valid & (group == g)].max()) for g in range(3)]
    np.testing.assert_allclose(p["max"], want, rtol=1e-4, atol=1e-4, err_msg=p["id"])
