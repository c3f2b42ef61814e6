"""The five paper-dataset loaders on tiny fake directory layouts."""
import json
import os

import pytest
from PIL import Image

from mmneuron_jax.data.sources import datasets as D
from mmneuron_jax.data.sources.records import load_image, validate


def _img(path, color=(90, 90, 90), size=(12, 8)):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.new("RGB", size, color).save(path)


def _json(path, obj):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(obj, f)


def make_lingoqa(root):
  import pandas as pd
  for seg in ("s1", "s2"):
    for k in range(3):
      _img(os.path.join(root, "images", "val", seg, f"{k}.jpg"), (40 * k, 10, 10), (6, 4))
  frames = lambda s: [f"images/val/{s}/{k}.jpg" for k in range(3)]
  pd.DataFrame({"question_id": ["q1", "q1", "q2"], "segment_id": ["s1", "s1", "s2"],
                "question": ["Why stop?", "Why stop?", "Any cyclists?"],
                "answer": ["Red light.", "Because the light is red.", "No."],
                "images": [frames("s1"), frames("s1"), frames("s2")]}).to_parquet(os.path.join(root, "val.parquet"))


def make_pmc(root):
  import pandas as pd
  for name in ("f1.jpg", "f2.jpg"):
    _img(os.path.join(root, "figures", name))
  pd.DataFrame({"Figure_path": ["f1.jpg", "f1.jpg", "f2.jpg"], "Question": ["What modality?", "Which organ?", "Where?"],
                "Answer": ["CT", "Liver", "Left"], "Choice A": [" A:MRI ", "A:Heart", "A:Left"],
                "Choice B": [" B:CT", "B:Liver", "B:Right"], "Choice C": ["C:X-ray", "C:Lung", "C:Top"],
                "Choice D": ["D:PET", "D:Brain", "D:Bottom"], "Answer_label": ["B", "B", "A"]}
               ).to_csv(os.path.join(root, "test.csv"), index=False)


def make_rsvqa(root, split="test"):
  for i in (0, 1):
    _img(os.path.join(root, "Data", f"{i}.png"), (30, 120, 40))
  qs = [{"id": 0, "img_id": 0, "question": "Is there a road?", "answers_ids": [0], "type": "presence", "active": True},
        {"id": 1, "img_id": 0, "question": "How many buildings?", "answers_ids": [1], "type": "count", "active": True},
        {"id": 2, "img_id": 1, "question": "Is there water?", "answers_ids": [2], "type": "presence", "active": False},
        {"id": 3, "img_id": 1, "question": "Is it rural?", "answers_ids": [3], "type": "rural_urban", "active": True}]
  ans = [{"id": i, "question_id": i, "answer": a, "active": True} for i, a in enumerate(["yes", "12", "no", "yes"])]
  _json(os.path.join(root, f"USGS_split_{split}_questions.json"), {"questions": qs})
  _json(os.path.join(root, f"USGS_split_{split}_answers.json"), {"answers": ans})
  _json(os.path.join(root, f"USGS_split_{split}_images.json"), {"images": [{"id": 0, "active": True},
                                                                      {"id": 1, "active": True}]})


def make_vqav2(root):
  for iid in (42, 7):
    _img(os.path.join(root, "val2014", f"COCO_val2014_{iid:012d}.jpg"), (200, 30, 30))
  _json(os.path.join(root, "v2_OpenEnded_mscoco_val2014_questions.json"), {"questions": [
      {"image_id": 42, "question": "How many dogs?", "question_id": 420},
      {"image_id": 42, "question": "What color?", "question_id": 421},
      {"image_id": 7, "question": "Is it sunny?", "question_id": 70}]})
  mk = lambda qid, iid, a: {"question_id": qid, "image_id": iid, "answer_type": "other", "multiple_choice_answer": a[0],
                            "answers": [{"answer": x, "answer_confidence": "yes", "answer_id": k + 1}
                                        for k, x in enumerate(a)]}
  _json(os.path.join(root, "v2_mscoco_val2014_annotations.json"), {"annotations": [
      mk(420, 42, ["2"] * 7 + ["two"] * 3), mk(421, 42, ["red"] * 10), mk(70, 7, ["yes"] * 9 + ["no"])]})


def make_docvqa(root):
  for name in ("doc_a.png", "doc_b.png"):
    _img(os.path.join(root, "documents", name), (250, 250, 250), (20, 30))
  _json(os.path.join(root, "val_v1.0.json"), {"dataset_name": "docvqa", "data": [
      {"questionId": 1, "question": "What is the date?", "image": "documents/doc_a.png", "docId": 1,
       "answers": ["1/2/1990", "January 2, 1990"], "question_types": ["form"]},
      {"questionId": 2, "question": "Who signed?", "image": "documents/doc_a.png", "docId": 1, "answers": ["J. Doe"]},
      {"questionId": 3, "question": "What is the total?", "image": "documents/doc_b.png", "docId": 2,
       "answers": ["$5"]}]})


def test_lingoqa(tmp_path):
  make_lingoqa(str(tmp_path))
  recs = D.load_lingoqa(str(tmp_path))
  assert [r.id for r in recs] == ["q1", "q2"] and {r.domain for r in recs} == {"auto-driving"}
  assert recs[0].answers == ["Red light.", "Because the light is red."] and recs[0].meta["segment_id"] == "s1"
  assert len(recs[0].image_paths) == 3 and recs[0].image_paths[0] == os.path.join(str(tmp_path), "images/val/s1/0.jpg")
  im = load_image(recs[0])
  assert im.size == (18, 4) and im.getpixel((13, 1))[0] > 60  # three 6x4 frames side by side
  assert validate(recs) == (recs, [])


def test_pmc_vqa(tmp_path):
  make_pmc(str(tmp_path))
  recs = D.load_pmc_vqa(str(tmp_path))
  assert [r.id for r in recs] == ["pmc-vqa-test-0", "pmc-vqa-test-2"]  # one question per figure, like the authors
  r = recs[0]
  assert r.domain == "medical" and r.question == "What modality?" and r.answers == ["B"]
  assert r.choices == ["MRI", "CT", "X-ray", "PET"] and r.meta["answer_text"] == "CT"
  assert r.image_path == os.path.join(str(tmp_path), "figures", "f1.jpg")
  assert len(D.load_pmc_vqa(str(tmp_path), one_per_image=False)) == 3
  assert validate(recs)[1] == []


def test_rsvqa_hr(tmp_path):
  make_rsvqa(str(tmp_path))
  recs = D.load_rsvqa_hr(str(tmp_path), one_per_image=False)
  assert [r.id for r in recs] == ["rsvqa-0", "rsvqa-1", "rsvqa-3"]  # the inactive question is skipped
  assert [r.answers for r in recs] == [["yes"], ["12"], ["yes"]] and recs[1].meta["type"] == "count"
  assert {r.domain for r in recs} == {"remote-sensing"}
  assert recs[0].image_path == os.path.join(str(tmp_path), "Data", "0.png")
  assert [r.id for r in D.load_rsvqa_hr(str(tmp_path))] == ["rsvqa-0", "rsvqa-3"]


def test_vqav2(tmp_path):
  make_vqav2(str(tmp_path))
  recs = D.load_vqav2(str(tmp_path))
  assert [r.id for r in recs] == ["420", "70"] and {r.domain for r in recs} == {"common-scenes"}
  assert recs[0].answers == ["2"] * 7 + ["two"] * 3 and len(recs[1].answers) == 10
  assert recs[0].image_path.endswith(os.path.join("val2014", "COCO_val2014_000000000042.jpg"))
  assert validate(recs)[1] == []


def test_docvqa(tmp_path):
  make_docvqa(str(tmp_path))
  recs = D.load_docvqa(str(tmp_path), one_per_image=False)
  assert [r.id for r in recs] == ["1", "2", "3"] and {r.domain for r in recs} == {"documents"}
  assert recs[0].answers == ["1/2/1990", "January 2, 1990"]
  assert load_image(recs[2]).size == (20, 30)
  assert len(D.load_docvqa(str(tmp_path))) == 2


def test_load_all_and_errors(tmp_path):
  root = str(tmp_path)
  for sub, make in (("lingoqa", make_lingoqa), ("pmc-vqa", make_pmc), ("rsvqa-hr", lambda r: make_rsvqa(r, "val")),
                    ("vqav2", make_vqav2), ("docvqa", make_docvqa)):
    make(os.path.join(root, sub))
  recs = D.load_all(root, n_per_domain=1)
  assert [r.domain for r in recs] == list(D.DOMAINS)
  assert len(D.load_all(root, domains=["medical"])) == 2  # 'val' falls back to PMC-VQA's test.csv
  os.remove(os.path.join(root, "docvqa", "val_v1.0.json"))
  with pytest.raises(FileNotFoundError, match=r"val_v1\.0\.json"):
    D.load_all(root)
  with pytest.raises(FileNotFoundError, match="documents dataset folder"):
    D.load_all(str(tmp_path / "empty"), domains=["documents"])
  _json(os.path.join(root, "docvqa", "val_v1.0.json"), {"data": [{"question": "q", "image": "x.png"}]})
  with pytest.raises(ValueError, match=r"val_v1\.0\.json item 0.*questionId"):
    D.load_docvqa(os.path.join(root, "docvqa"))
