"""The MMNeuron protocol defaults against plain reproductions of the authors' code (Z1zs/MMNeuron:
load_bench.py orders and prompts, generate.py template and max_length, evaluate.py metrics),
written here from their text, on tiny fake datasets."""
import json
import os
import random

import numpy as np
import pytest

from mmneuron_jax.configs import llava_next_7b, mmneuron_base
from mmneuron_jax.data.inputs import prompts
from mmneuron_jax.data.metrics import vqa_metrics as metrics
from mmneuron_jax.data.sources import datasets as D
from mmneuron_jax.data.sources.records import VQARecord
from mmneuron_jax.data.synthetic import demo
from mmneuron_jax.tasks.common import deactivation, families

DRIVING_ROLE = ("You are an advanced AI assistant installed on the Ego vehicle, equipped with conversational analysis "
                "capabilities for discussing autonomous driving scenarios. The perspective presented is from the "
                "point-of-view of the Ego vehicle, where the camera is mounted. It's important to note that the Ego "
                "vehicle itself is not visible in the images provided.")
SHORT = "\nAnswer the question using a single word or phrase."


def _json(path, obj):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(obj, f)


def make_root(root):
  """Five fake datasets (the loaders read no image here: only folders must exist)."""
  import pandas as pd
  rng = random.Random(0)
  ad = os.path.join(root, "lingoqa", "val")
  os.makedirs(ad, exist_ok=True)
  pd.DataFrame({"question_id": [f"q{i // 2}" for i in range(14)], "segment_id": [f"s{i // 2}" for i in range(14)],
                "question": [f"Why {i // 2}?" for i in range(14)], "answer": [f"because {i}" for i in range(14)],
                "images": [[f"images/s{i // 2}/{k}.jpg" for k in range(2)] for i in range(14)]}
               ).to_parquet(os.path.join(ad, "val.parquet"))
  med = os.path.join(root, "pmc-vqa")
  os.makedirs(os.path.join(med, "figures"), exist_ok=True)
  n = 17
  pd.DataFrame({"Figure_path": [f"f{rng.randrange(9)}.jpg" for _ in range(n)],
                "Question": [f" Which thing {i}? " for i in range(n)], "Answer": [f"thing {i}" for i in range(n)],
                "Choice A": [f" A:alpha {i} " for i in range(n)], "Choice B": [f"B:beta's {i}" for i in range(n)],
                "Choice C": [f"C:gamma {i}" for i in range(n)], "Choice D": [f"D:delta {i}" for i in range(n)],
                "Answer_label": [("A", "B", "C", "D", "x")[i % 5] for i in range(n)]}
               ).to_csv(os.path.join(med, "test.csv"), index=False)
  rs = os.path.join(root, "rsvqa-hr")
  os.makedirs(os.path.join(rs, "Data"), exist_ok=True)
  qs = [{"id": i, "img_id": rng.randrange(7), "question": f"Is there {i}?", "answers_ids": [i], "type": "presence",
         "active": i % 6 != 5} for i in range(23)]
  _json(os.path.join(rs, "USGS_split_val_questions.json"), {"questions": qs})
  _json(os.path.join(rs, "USGS_split_val_answers.json"),
        {"answers": [{"id": i, "question_id": i, "answer": ("Yes", "no", "12")[i % 3], "active": True}
                     for i in range(23)]})
  _json(os.path.join(rs, "USGS_split_val_images.json"), {"images": [{"id": i, "active": i != 3} for i in range(7)]})
  com = os.path.join(root, "vqav2")
  os.makedirs(os.path.join(com, "val2014"), exist_ok=True)
  vq = [{"image_id": rng.randrange(8), "question": f"What {i}?", "question_id": 1000 + i} for i in range(21)]
  _json(os.path.join(com, "v2_OpenEnded_mscoco_val2014_questions.json"), {"questions": vq})
  anns = [{"question_id": q["question_id"], "answer_type": "other", "multiple_choice_answer": "a",
           "answers": [{"answer": ("Red", "blue", "two")[(j + k) % 3], "answer_confidence": ("yes", "maybe", "no")[k % 3],
                        "answer_id": k + 1} for k in range(10)]} for j, q in enumerate(vq)]
  _json(os.path.join(com, "v2_mscoco_val2014_annotations.json"), {"annotations": anns})
  doc = os.path.join(root, "docvqa")
  _json(os.path.join(doc, "val_v1.0.json"), {"data": [
      {"questionId": 500 + i, "question": f"What is {i}?", "image": f"documents/d{rng.randrange(10)}.png",
       "answers": [f"Ans {i}", f"ans{i}"]} for i in range(25)]})
  return root


# ---------------------------------------------------------------- the authors' loaders, from load_bench.py

def authors_ad(root):
  import pandas as pd
  df = pd.read_parquet(os.path.join(root, "lingoqa", "val", "val.parquet")).sample(frac=1, random_state=42)
  for _, row in df.iterrows():
    prompt = "<image>" + "\n" + f"Role: {DRIVING_ROLE} Question: {row['question']}"
    yield prompt, row["question_id"], row["answer"]


def authors_med(root):
  import pandas as pd
  path = os.path.join(root, "pmc-vqa", "test.csv")  # their "val.csv"
  df = pd.concat([pd.read_csv(path), pd.read_csv(path)], axis="index").sample(frac=1, random_state=42)
  img_set = set()
  for _, row in df.iterrows():
    answer = row["Answer_label"]
    if answer not in ["A", "B", "C", "D"]:
      answer = row["Answer"]
    if row["Figure_path"] in img_set:
      continue
    img_set.add(row["Figure_path"])
    choice_txt = [row[f"Choice {i}"] for i in ["A", "B", "C", "D"]]
    prompt = ("<image>" + "\n" + f"Question: {row['Question']}\nContext: N/A\nOptions: {choice_txt}\n"
              + "\nAnswer with the option's letter from the given choices directly.")
    yield prompt, row["Question"], answer


def authors_rs(root):
  with open(os.path.join(root, "rsvqa-hr", "USGS_split_val_questions.json")) as f:
    data = json.load(f)["questions"]
  imgs = [str(t["img_id"]) for t in data if t["active"]]
  ques = [t["question"] for t in data if t["active"]]
  ans_ids = [t["answers_ids"] for t in data if t["active"]]
  with open(os.path.join(root, "rsvqa-hr", "USGS_split_val_answers.json")) as f:
    ans_data = json.load(f)["answers"]
  ans = [ans_data[t[0]] for t in ans_ids]
  zipped = list(zip(imgs, ques, ans))
  random.Random(4).shuffle(zipped)
  img_set = set()
  for img, q, a in zipped:
    if img in img_set:
      continue
    img_set.add(img)
    yield "<image>" + "\n" + f"Question: {q}" + SHORT, q, a


def authors_com(root):
  with open(os.path.join(root, "vqav2", "v2_OpenEnded_mscoco_val2014_questions.json")) as f:
    data = json.load(f)["questions"]
  with open(os.path.join(root, "vqav2", "v2_mscoco_val2014_annotations.json")) as f:
    qid2ans = {str(a["question_id"]): a["answers"] for a in json.load(f)["annotations"]}  # their ansdict
  zipped = list(zip([str(t["image_id"]) for t in data], [t["question"] for t in data],
                    [qid2ans[str(t["question_id"])] for t in data]))
  random.Random(4).shuffle(zipped)
  img_set = set()
  for img, q, a in zipped:
    if img in img_set:
      continue
    img_set.add(img)
    yield "<image>" + "\n" + f"Question: {q}" + SHORT, q, a


def hf_shuffle_indices(n, seed):
  """datasets.Dataset.shuffle(seed=...) (arrow_dataset.py): generator = np.random.default_rng(seed);
  permutation = generator.permutation(len(self)); self.select(indices=permutation)."""
  try:  # confirm with the library itself where it is installed
    import datasets
    return datasets.Dataset.from_dict({"i": list(range(n))}).shuffle(seed=seed)["i"]
  except ImportError:
    generator = np.random.default_rng(seed)
    return generator.permutation(n).tolist()


def authors_doc(root):
  with open(os.path.join(root, "docvqa", "val_v1.0.json")) as f:
    rows = json.load(f)["data"]
  img_set = set()
  for i in hf_shuffle_indices(len(rows), 42):
    tmp = rows[i]
    if tmp["image"] in img_set:
      continue
    img_set.add(tmp["image"])
    yield "<image>" + "\n" + f"Question: {tmp['question']}" + SHORT, tmp["question"], tmp["answers"]


def get_template(prompt):  # generate.py, model_flag "llava"
  template = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
              "detailed, and polite answers to the user's questions. USER: {prompt} ASSISTANT:")
  return template.format(prompt=prompt)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
  root = make_root(str(tmp_path_factory.mktemp("paper")))
  recs = D.load_all(root, split="val", order="authors")
  return root, {d: [r for r in recs if r.domain == d] for d in D.DOMAINS}


def _check_prompts(recs, theirs):
  cfg = mmneuron_base.get_config().eval
  fam = families.family("llava_next")
  for r, (prompt, *_) in zip(recs, theirs):
    assert fam.eval_prompt(r, cfg) == get_template(prompt)
    assert fam.lens_prompt(r) == prompt  # logit_len.py: load_pair's prompt, no template
    assert fam.stats_prompt(r) == f"<image>\n{r.question}"  # simple_flag


def test_driving_order_rows_and_prompt(loaded):
  root, by = loaded
  theirs = list(authors_ad(root))
  recs = by["auto-driving"]
  assert [r.id.split("#")[0] for r in recs] == [t[1] for t in theirs]
  assert [r.answers[0] for r in recs] == [t[2] for t in theirs]
  assert len({r.id for r in recs}) == len(recs) == 14
  _check_prompts(recs, theirs)


def test_medical_order_rows_and_prompt(loaded):
  root, by = loaded
  theirs = list(authors_med(root))
  recs = by["medical"]
  assert [(r.question, r.answers[0]) for r in recs] == [(t[1], t[2]) for t in theirs]
  _check_prompts(recs, theirs)


def test_remote_sensing_order_rows_and_prompt(loaded):
  root, by = loaded
  theirs = list(authors_rs(root))
  recs = by["remote-sensing"]
  assert [(r.question, r.meta["first_answer"]) for r in recs] == [(t[1], t[2]["answer"]) for t in theirs]
  _check_prompts(recs, theirs)
  # the file order (sha256 option) also drops questions on inactive image 3
  assert len(D.load_rsvqa_hr(os.path.join(root, "rsvqa-hr"), "val")) < len(recs)


def test_common_scenes_order_rows_and_prompt(loaded):
  root, by = loaded
  theirs = list(authors_com(root))
  recs = by["common-scenes"]
  assert [r.question for r in recs] == [t[1] for t in theirs]
  assert [r.meta["answer_confidence"] for r in recs] == [[a["answer_confidence"] for a in t[2]] for t in theirs]
  _check_prompts(recs, theirs)


def test_documents_order_rows_and_prompt(loaded):
  root, by = loaded
  theirs = list(authors_doc(root))
  recs = by["documents"]
  assert [(r.question, r.answers) for r in recs] == [(t[1], t[2]) for t in theirs]
  _check_prompts(recs, theirs)


def test_hf_shuffle_is_numpy_default_rng():
  assert D.authors_permutation("documents", 1000) == hf_shuffle_indices(1000, 42)
  assert D.authors_permutation("medical", 50) == np.random.RandomState(42).permutation(50).tolist()


# ---------------------------------------------------------------- the authors' metrics, from evaluate.py

def anls_package(prediction, gold_labels, threshold):
  """The `anls` package's anls_score (0.0.2)."""
  def lev(s1, s2):
    if len(s1) > len(s2):
      s1, s2 = s2, s1
    distances = list(range(len(s1) + 1))
    for i2, c2 in enumerate(s2):
      dists = [i2 + 1]
      for i1, c1 in enumerate(s1):
        dists.append(distances[i1] if c1 == c2 else 1 + min((distances[i1], distances[i1 + 1], dists[-1])))
      distances = dists
    return distances[-1]
  y_pred = " ".join(prediction.strip().lower().split())
  scores = []
  for g in gold_labels:
    y_true = " ".join(g.strip().lower().split())
    length = max(len(y_pred), len(y_true))
    nl = 0.0 if length == 0 else lev(y_pred, y_true) / length
    scores.append(1 - nl if nl < threshold else 0.0)
  return max(scores)


def eval_open_ended(rows):
  count = 0
  for tmp in rows:
    lbs = [t["answer"].lower() for t in tmp["ground_truth"] if t["answer_confidence"] == "yes"]
    count += tmp["answer"][0].lower() in lbs
  return count / len(rows)


def eval_med(rows):  # their loop adds per matching character; one per sample (the brief's "any")
  count = 0
  for tmp in rows:
    count += any(ch in ["A", "B", "C", "D", "E"] and ch == tmp["ground_truth"] for ch in tmp["answer"][0])
  return count / len(rows)


def eval_rs(rows):
  return sum(tmp["ground_truth"]["answer"].lower() == tmp["answer"][0].lower() for tmp in rows) / len(rows)


def eval_doc(rows):
  return sum(anls_package(tmp["answer"][0].lower(), [t.lower() for t in tmp["ground_truth"]], 1.0)
             for tmp in rows) / len(rows)


def test_authors_metrics_on_loaded_records(loaded):
  _, by = loaded
  rng = random.Random(1)
  cases = {
      "common-scenes": (eval_open_ended, lambda r: [{"answer": a, "answer_confidence": c}
                                                     for a, c in zip(r.answers, r.meta["answer_confidence"])],
                        ["red", "Blue", "two", "RED", "red ", "purple"]),
      "medical": (eval_med, lambda r: r.answers[0], ["A", "The answer is B.", "(C)", "d", "E", "none", "thing 4"]),
      "remote-sensing": (eval_rs, lambda r: {"answer": r.meta["first_answer"]}, ["yes", "No", "12", " yes", "13"]),
      "documents": (eval_doc, lambda r: r.answers, ["ans 1", "Ans 3", "xyz", "", "ANS12 "]),
  }
  echo = {"common-scenes": lambda r: r.answers[0].upper(), "medical": lambda r: f"({r.answers[0]}) {r.answers[0]}",
          "remote-sensing": lambda r: r.meta["first_answer"].upper(), "documents": lambda r: r.answers[1][:-1]}
  for domain, (theirs, truth, outputs) in cases.items():
    recs = by[domain]
    preds = [echo[domain](r) if i % 3 == 0 else rng.choice(outputs) for i, r in enumerate(recs)]
    rows = [{"ground_truth": truth(r), "answer": [p]} for r, p in zip(recs, preds)]
    got = metrics.score_all(preds, recs)
    assert got["primary"] == got["authors"] == pytest.approx(theirs(rows), abs=1e-12), domain
    assert 0 < got["authors"] < 1, domain


def test_authors_metric_single_cases():
  car = VQARecord("c", "auto-driving", "q", ["Red light."])
  got = metrics.score_record("red light", car)
  assert np.isnan(got["authors"]) and got["primary"] == got["standard"] == got["anls"]
  vqa = VQARecord("v", "common-scenes", "q", ["yes", "no"], meta={"answer_confidence": ["maybe", "yes"]})
  assert metrics.authors_score("yes", vqa) == 0.0 and metrics.authors_score("No", vqa) == 1.0
  med = VQARecord("m", "medical", "q", ["B"], choices=list("wxyz"))
  assert metrics.authors_score("A or B", med) == 1.0 and metrics.authors_score("b", med) == 0.0


# ---------------------------------------------------------------- generation, splits, configs

def test_answer_budget_is_hf_max_length():
  """HF's max_length counts input_ids; the authors' LLaVA-NeXT input_ids held one <image> token."""
  img = 7
  ids = np.array([[0, 0, 1, img, img, img, 5, 6], [1, img, img, img, 5, 6, 8, 9]])
  am = (ids != 0).astype(np.int32)
  got = deactivation.answer_budgets({"input_ids": ids, "attention_mask": am}, img, 10, prompt_image_tokens=1)
  np.testing.assert_array_equal(got, [10 - 4, 10 - 6])
  np.testing.assert_array_equal(deactivation.answer_budgets({"input_ids": ids, "attention_mask": am}, img, 5), [1, 1])
  blip = deactivation.answer_budgets({"input_ids": ids, "attention_mask": am}, img, 10, prompt_image_tokens=0)
  np.testing.assert_array_equal(blip, [10 - 3, 10 - 5])


def test_demo_splits_are_disjoint():
  train, val = demo.demo_records(3, seed=0), demo.demo_records(3, seed=0, split="val")
  assert not {r.id for r in train} & {r.id for r in val}
  assert not {r.image_bytes for r in train} & {r.image_bytes for r in val}
  assert [r.id for r in train] == [r.id for r in demo.demo_records(3, seed=0, split="train")]


def test_defaults_are_the_authors():
  c = llava_next_7b.get_config()
  assert (c.stats.split, c.eval.split, c.lens.split) == ("train", "val", "train")
  assert c.eval.n_per_domain == 1001 and c.eval.max_length == 512 and c.eval.max_new_tokens == 0
  assert c.eval.metric == "authors" and c.data.order == "authors"
  assert c.lens.prompt == "authors" and c.lens.positions == "all" and c.lens.n_per_domain == 0
  assert families.family("llava_next").style == "authors"
  assert prompts.eval_prompt(VQARecord("x", "documents", "What?"), "vicuna_v1", "authors") == \
      get_template("<image>\nQuestion: What?" + SHORT)


def test_documents_from_the_hf_parquet_copy(tmp_path):
  """pixparse/docvqa-single-page-questions as parquet shards: load_doc's order and image filter."""
  import pandas as pd
  rng = random.Random(3)
  rows = [{"questionId": 900 + i, "question": f"Which {i}?", "answers": [f"a{i}"],
           "image": {"bytes": bytes([i % 5]), "path": None}, "other_metadata": {"image": f"p{i % 5}.png"}}
          for i in range(19)]
  os.makedirs(tmp_path / "data")
  pd.DataFrame(rows[:11]).to_parquet(tmp_path / "data" / "validation-00000-of-00002.parquet")
  pd.DataFrame(rows[11:]).to_parquet(tmp_path / "data" / "validation-00001-of-00002.parquet")
  rng.shuffle(rows)  # nothing below may depend on this list's order
  by_q = {r["question"]: r for r in rows}
  recs = D.load_docvqa(str(tmp_path), "val", authors_order=True)
  img_set, theirs = set(), []
  table = pd.concat([pd.read_parquet(tmp_path / "data" / f"validation-0000{k}-of-00002.parquet") for k in (0, 1)])
  dataset = table.to_dict("records")
  for i in hf_shuffle_indices(len(dataset), 42):
    tmp = dataset[i]
    if tmp["other_metadata"]["image"] in img_set:
      continue
    img_set.add(tmp["other_metadata"]["image"])
    theirs.append(tmp["question"])
  assert [r.question for r in recs] == theirs and len(theirs) == 5
  assert all(r.image_bytes == by_q[r.question]["image"]["bytes"] for r in recs)


def test_records_source_reads_one_split_per_stage(tmp_path):
  import dataclasses
  from mmneuron_jax.data.sources.records import write_records
  from mmneuron_jax.tasks.common import sources
  train, val = demo.demo_records(1), demo.demo_records(1, split="val")
  write_records(train, str(tmp_path / "recs_train.jsonl"))
  write_records(val, str(tmp_path / "recs_val.jsonl"))
  c = mmneuron_base.get_config()
  c.data.source, c.data.path = "records", str(tmp_path / "recs_{split}.jsonl")
  for split, want in (("train", train), ("val", val)):
    got, bad = sources.load_records(c, str(tmp_path), split)
    assert sorted(r.id for r in got) == sorted(r.id for r in want) and not bad
  tagged = [dataclasses.replace(r, meta={**r.meta, "split": s}) for s, recs in (("train", train), ("val", val))
            for r in recs]
  c.data.path = write_records(tagged, str(tmp_path / "all.jsonl"))  # one file with a split column
  assert sorted(r.id for r in sources.load_records(c, str(tmp_path), "val")[0]) == sorted(r.id for r in val)
