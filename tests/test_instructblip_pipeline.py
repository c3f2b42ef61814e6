"""InstructBLIP through the MMNeuron pipeline: the tiny demo checkpoint (read by HF too, fp32 logits
<= 1e-4), its inputs builder vs HF's InstructBlipProcessor, the authors' prompt rewrite, statistics
that ignore padding rows (vs counts from captured neurons), and the demo config end to end
through `tasks.run` with a side-by-side section against a second run directory."""
import json
import os

import numpy as np
import pytest
import torch
import transformers

import hf_tiny  # noqa: F401  (sets HF_HUB_OFFLINE)
import mmneuron_jax
from mmneuron_jax.configs import instructblip_demo
from mmneuron_jax import tasks
from mmneuron_jax.analysis.neuron_sets import NeuronSet
from mmneuron_jax.data.inputs import prompts
from mmneuron_jax.data.inputs.instructblip import InstructBlipInputs
from mmneuron_jax.data.sources.records import load_image
from mmneuron_jax.data.synthetic import demo, demo_instructblip as demo_blip
from mmneuron_jax.tasks.common import families
from mmneuron_jax.tasks.compare import side_by_side
from mmneuron_jax.tasks.mmneuron import domain_stats

TOL = 1e-4
MODULES = ("llm", "vision", "qformer_text", "qformer_query")
CONDITIONS = {"none": (), "llm": ("llm",), "vision": ("vision",), "qformer": ("qformer_text", "qformer_query"),
              "vision+qformer": ("vision", "qformer_text", "qformer_query"),
              "all": ("llm", "vision", "qformer_text", "qformer_query")}


@pytest.fixture(scope="module")
def records():
  return demo.demo_records(n_per_domain=2)


@pytest.fixture(scope="module")
def checkpoint(records, tmp_path_factory):
  fam = families.family("instructblip")
  path = str(tmp_path_factory.mktemp("blip_demo"))
  return demo_blip.build_demo_checkpoint(path, fam.vocabulary_texts(records, instructblip_demo.get_config().eval))


def authors_blip_prompt(llava_prompt: str) -> str:
  """The MMNeuron code's InstructBLIP rewrite of its LLaVA-format prompt (generate.py), re-done here."""
  p = llava_prompt.replace("<image>\n", "").replace("Context: N/A", "")
  return "<image>" + p.replace("\nAnswer the question using a single word or phrase.", " Short Answer:")


def test_eval_prompt_is_the_authors_rewrite(records):
  fam = families.family("instructblip")
  cfg = instructblip_demo.get_config().eval
  for r in records:
    if r.domain == "auto-driving":
      llava = f"<image>\nRole: {prompts.DRIVING_ROLE} Question: {r.question}"
    elif r.choices:
      llava = (f"<image>\nQuestion: {r.question}\nContext: N/A\nOptions: "
               f"{[f'{chr(65 + i)}:{c}' for i, c in enumerate(r.choices)]}\n\n{prompts.MULTIPLE_CHOICE}")
    else:
      llava = f"<image>\nQuestion: {r.question}\n{prompts.SHORT_ANSWER}"
    assert fam.eval_prompt(r, cfg) == authors_blip_prompt(llava), r.domain
  assert "USER:" not in fam.eval_prompt(records[0], cfg)  # no Vicuna template for BLIP


def test_demo_checkpoint_is_deterministic(checkpoint, records, tmp_path):
  other = demo_blip.build_demo_checkpoint(str(tmp_path / "again"), families.family("instructblip").vocabulary_texts(
      records, instructblip_demo.get_config().eval))
  for name in ("model.safetensors", "config.json", "tokenizer.json", "qformer_tokenizer/tokenizer.json"):
    assert open(os.path.join(checkpoint, name), "rb").read() == open(os.path.join(other, name), "rb").read(), name


def test_inputs_match_hf_processor(checkpoint, records):
  inputs = InstructBlipInputs.from_pretrained(checkpoint)
  recs = records[:3]
  texts = [r.question for r in recs]  # no literal "<image>": HF v5 would turn it into an image token
  images = [load_image(r) for r in recs]
  ours = inputs(texts, images)
  hf = transformers.InstructBlipProcessor(image_processor=inputs.image_processor, tokenizer=inputs.tokenizer,
                                          qformer_tokenizer=inputs.qformer_tokenizer,
                                          num_query_tokens=demo_blip.NUM_QUERY)
  ref = hf(images=images, text=texts, padding=True, return_tensors="np")
  for key in ("input_ids", "attention_mask", "qformer_input_ids", "qformer_attention_mask"):
    np.testing.assert_array_equal(ours[key], ref[key], err_msg=key)
  np.testing.assert_allclose(ours["pixel_values"], ref["pixel_values"], atol=1e-6)
  # A literal "<image>" (the MMNeuron prompts) is text, as for the authors: still Q image tokens per row.
  lit = inputs([prompts.stats_prompt(r) for r in recs], images)
  assert ((lit["input_ids"] == inputs.image_token_id).sum(1) == demo_blip.NUM_QUERY).all()
  plain = inputs.tokenizer(prompts.stats_prompt(recs[0]), split_special_tokens=True)["input_ids"]
  np.testing.assert_array_equal(lit["input_ids"][0, demo_blip.NUM_QUERY:][:len(plain)], plain)
  drop = InstructBlipInputs.from_pretrained(checkpoint, image_text="drop")
  dropped = drop([prompts.stats_prompt(recs[0])], images[:1])
  np.testing.assert_array_equal(dropped["input_ids"][0, demo_blip.NUM_QUERY:],
                                inputs.tokenizer(recs[0].question)["input_ids"])


@pytest.fixture(scope="module")
def captured(checkpoint, records):
  """(model, inputs, batch of two stats prompts, Output with every module's neurons captured)."""
  model = mmneuron_jax.load_hf(checkpoint)
  inputs = InstructBlipInputs.from_pretrained(checkpoint)
  batch = inputs([prompts.stats_prompt(r) for r in records[:2]], [load_image(r) for r in records[:2]])
  return model, inputs, batch, model.apply(model.params, batch, capture=MODULES)


def test_demo_checkpoint_matches_hf(checkpoint, captured):
  """HF reads every tensor of the demo checkpoint; fp32 logits agree with ours."""
  hf, info = transformers.InstructBlipForConditionalGeneration.from_pretrained(checkpoint, output_loading_info=True,
                                                                             attn_implementation="eager")
  assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
  _, _, batch, out = captured
  with torch.no_grad():
    ref = hf.eval()(**{k: torch.tensor(v) for k, v in batch.items()}).logits.numpy()
  valid = batch["attention_mask"].astype(bool)
  assert np.abs(np.asarray(out.logits)[valid] - ref[valid]).max() <= TOL


def test_statistics_ignore_padding_rows(records, captured):
  """Counts of a 2-record batch padded to 3 rows == counts of captured neurons > 0 (plain numpy)."""
  model, inputs, batch, out = captured
  recs = {"a": records[:2], "b": records[2:3]}
  step = domain_stats.make_step_fn(model, model.params, inputs, recs, prompts.stats_prompt, load_image, 2, 3)
  got = step(domain_stats.PlannedBatch(0, (0, 1)))
  keep = {"llm": batch["attention_mask"].astype(bool), "qformer_text": batch["qformer_attention_mask"].astype(bool)}
  for m in MODULES:
    acts = np.asarray(out.aux[m])  # [L, B, T, F]
    sel = keep.get(m, np.ones(acts.shape[1:3], bool))
    np.testing.assert_array_equal(got[f"count/{m}"][:, 0], (acts[:, sel] > 0).sum(1), err_msg=m)
    np.testing.assert_array_equal(got[f"count/{m}"][:, 1], 0, err_msg=m)
    assert got[f"tokens/{m}"][0] == sel.sum() and got[f"tokens/{m}"][1] == 0, m


def fake_llava_run(path, domains):
  """A finished run directory as a LLaVA-NeXT run leaves it (small random sets, rows, lens)."""
  rng = np.random.default_rng(0)
  os.makedirs(os.path.join(path, "neurons"))
  for module, (layers, width) in {"llm": (3, 40), "vision": (2, 30), "projector": (1, 20)}.items():
    NeuronSet("fake/llava", module, domains, layers, width, rng.random((len(domains), layers, width)) < 0.05,
              {"top_rate": 0.05}).save(os.path.join(path, "neurons", f"{module}.json"))
  rows = [{"domain": d, "condition": c, "control": k, "primary": float(rng.random()), "n": 1, "neurons_off": 0}
          for d in domains for c, k in [("none", "dape"), ("llm", "dape"), ("llm", "random")]]
  json.dump({"rows": rows}, open(os.path.join(path, "deactivation.json"), "w"))
  json.dump({d: {"entropy": rng.random(3).tolist()} for d in domains}, open(os.path.join(path, "logit_lens.json"), "w"))
  json.dump({"model": {"id": "fake/llava"}}, open(os.path.join(path, "config.json"), "w"))
  return rows


DOMAINS = ["remote-sensing", "common-scenes", "documents"]  # three short-prompt domains: one shape to compile


def small_config(other_run):
  c = instructblip_demo.get_config()
  c.data.domains = DOMAINS
  c.data.n_per_domain = 3
  c.stats.max_samples_per_domain = 3
  c.eval.n_per_domain = 1
  c.eval.max_new_tokens = 2
  c.lens.n_per_domain = 1
  c.compare_with = (other_run,)
  return c


def test_demo_config_runs_the_whole_pipeline(tmp_path):
  domains = DOMAINS
  other = str(tmp_path / "llava_run")
  fake_rows = fake_llava_run(other, domains)
  workdir = str(tmp_path / "blip_run")
  report = tasks.run(small_config(other), workdir)
  text = open(report).read()
  for section in ("Domain-specific neurons", "Deactivation", "Logit lens", "Side by side", "`vision+qformer`"):
    assert section in text, section

  sets = {m: NeuronSet.load(os.path.join(workdir, "neurons", f"{m}.json")) for m in MODULES}
  model_cfg = json.load(open(os.path.join(workdir, "demo_checkpoint", "config.json")))
  assert sets["vision"].layers == model_cfg["vision_config"]["num_hidden_layers"]
  assert sets["qformer_query"].width == model_cfg["qformer_config"]["intermediate_size"]
  assert all(s.group_names == domains for s in sets.values())

  result = json.load(open(os.path.join(workdir, "deactivation.json")))
  assert result["conditions"] == {k: list(v) for k, v in CONDITIONS.items()}
  rows = result["rows"]
  assert len(rows) == len(domains) * (6 + 5)  # six conditions + five random controls per domain
  for r in rows:  # neurons switched off = the domain's own neurons in the condition's modules
    want = sum(int(sets[m].mask[domains.index(r["domain"])].sum()) for m in CONDITIONS[r["condition"]])
    assert r["neurons_off"] == want, r

  lens = json.load(open(os.path.join(workdir, "logit_lens.json")))
  assert all(len(lens[d]["entropy"]) == model_cfg["text_config"]["num_hidden_layers"] for d in domains)
  assert all(np.isfinite(lens[d]["entropy"]).all() and lens[d]["image_positions"] == demo_blip.NUM_QUERY
             and lens[d]["positions"] > demo_blip.NUM_QUERY for d in domains)  # every position, image ones among them
  assert "| documents | 3 | 51 |" in text  # 3 images x (16 EVA patches + CLS)

  # side by side: budgets and deactivation deltas, recomputed here
  assert f"| demo/tiny-instructblip | vision | 3 x 80 | {round(3 * 80 * 0.05)} |" in text
  assert "| fake/llava | projector | 1 x 20 | 1 |" in text
  delta = np.mean([next(r["primary"] for r in fake_rows if r["domain"] == d and r["condition"] == "llm" and
                        r["control"] == "dape") - next(r["primary"] for r in fake_rows if r["domain"] == d and
                                                       r["condition"] == "none") for d in domains])
  assert f"| fake/llava | llm | {delta:+.3f} |".replace("-0.000", "+0.000") in text  # no "-0.000" in reports
  for name in ("compare_neurons_per_layer.png", "compare_logit_lens.png", "logit_lens.png"):
    assert open(os.path.join(workdir, "plots", name), "rb").read(8) == b"\x89PNG\r\n\x1a\n"

  # the comparison alone, as its own task, from the two run directories
  compare = tasks.run(side_by_side_config(workdir, other), str(tmp_path / "compare"))
  assert "## Side by side" in open(compare).read()


def side_by_side_config(*dirs):
  from mmneuron_jax.configs import mmneuron_compare
  return mmneuron_compare.get_config("+".join(dirs))
