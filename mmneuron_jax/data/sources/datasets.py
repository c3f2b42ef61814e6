"""Loaders for the five MMNeuron datasets, each from its own local directory layout.

- auto-driving, LingoQA: `{split}.parquet` (or `{split}/{split}.parquet`) with question_id,
  segment_id, question, answer(s), images (frame paths relative to the parquet's folder).
- medical, PMC-VQA: `{split}.csv` with Figure_path, Question, Answer, Choice A..D, Answer_label;
  images in `figures/` or `images/`.
- remote-sensing, RSVQA-HR: `USGS_split_{split}_{questions,answers,images}.json`; images
  `Data/<img_id>.png`.
- common-scenes, VQAv2: `v2_OpenEnded_mscoco_{split}_questions.json`,
  `v2_mscoco_{split}_annotations.json`; images `{split}/COCO_{split}_%012d.jpg`.
- documents, DocVQA: `{split}_v1.0.json` (`data`: questionId, question, image, answers).

Like the authors' loaders, every dataset except LingoQA keeps one question per image by default
(`one_per_image=True`).

`authors_order=True` (what `load_all(order="authors")` passes) reproduces the authors' sample order
and row set (their load_bench.py): the rows they read are permuted as they did (`authors_permutation`)
and only then reduced to one question per image, first occurrence winning. Their orders:
pandas `sample(frac=1, random_state=42)` for LingoQA and PMC-VQA (PMC-VQA's csv read twice and
concatenated before the shuffle), `random.Random(4).shuffle` for RSVQA-HR (active questions) and
VQAv2 (all questions), HF datasets `shuffle(seed=42)` for DocVQA. LingoQA then keeps every parquet
row as its own sample (the authors did; rows sharing a question_id get ids `qid`, `qid#1`, ...,
each with its own answer first). `authors_order=False`: file order, LingoQA rows sharing a
question_id merged into one record, RSVQA questions on inactive images dropped; order the result
with `records.deterministic_shuffle` (the sha256 order).
"""
import json
import os
import random
import re

import numpy as np

from mmneuron_jax.data.sources.records import VQARecord, parse_list

DOMAINS = ("auto-driving", "medical", "remote-sensing", "common-scenes", "documents")

# Folder names `load_all` looks for under its root, per domain (first existing wins).
SUBDIRS = {
    "auto-driving": ("lingoqa", "LingoQA", "ad"),
    "medical": ("pmc-vqa", "PMC-VQA", "pmc_vqa", "med"),
    "remote-sensing": ("rsvqa-hr", "RSVQA-HR", "rsvqa_hr", "rs"),
    "common-scenes": ("vqav2", "VQAv2", "vqa_v2", "com"),
    "documents": ("docvqa", "DocVQA", "doc"),
}
# Each dataset's split names for a generic split (first existing wins; PMC-VQA has no val split).
SPLITS = {
    "val": {"auto-driving": ("val",), "medical": ("val", "test"), "remote-sensing": ("val",),
            "common-scenes": ("val2014",), "documents": ("val",)},
    "train": {"auto-driving": ("train",), "medical": ("train",), "remote-sensing": ("train",),
              "common-scenes": ("train2014",), "documents": ("train",)},
    "test": {"auto-driving": ("val",), "medical": ("test",), "remote-sensing": ("test",),
             "common-scenes": ("val2014",), "documents": ("test",)},
}


ORDERS = ("authors", "sha256")
# Which shuffle the authors' loader applied to each domain (load_bench.py).
AUTHORS_SHUFFLE = {"auto-driving": "pandas", "medical": "pandas", "remote-sensing": "python_random",
                   "common-scenes": "python_random", "documents": "hf_datasets"}


def authors_permutation(domain: str, n: int) -> list:
  """The authors' order of `n` loaded rows of `domain`: position k of the result is the row index
  their loader read k-th (before their one-question-per-image filter).
  - pandas `df.sample(frac=1, random_state=42)` = `np.random.RandomState(42).permutation(n)`;
  - `random.Random(4).shuffle(rows)` (a Python list);
  - HF datasets `Dataset.shuffle(seed=42)` = `np.random.default_rng(42).permutation(n)`."""
  kind = AUTHORS_SHUFFLE.get(domain)
  if kind == "pandas":
    return np.random.RandomState(42).permutation(n).tolist()
  if kind == "python_random":
    idx = list(range(n))
    random.Random(4).shuffle(idx)
    return idx
  if kind == "hf_datasets":
    return np.random.default_rng(42).permutation(n).tolist()
  raise ValueError(f"no authors' order for domain {domain!r}; expected one of {sorted(AUTHORS_SHUFFLE)}")


def _permute(records: list, domain: str) -> list:
  return [records[i] for i in authors_permutation(domain, len(records))]


def _first_existing(paths, what: str) -> str:
  for p in paths:
    if os.path.exists(p):
      return p
  raise FileNotFoundError(f"{what} not found; looked for: {', '.join(paths)}")


def _load_json(path: str, key: str):
  with open(path, encoding="utf-8") as f:
    data = json.load(f)
  if not isinstance(data, dict) or key not in data:
    raise ValueError(f"{path}: expected a JSON object with a '{key}' list")
  return data[key]


def _one_per_image(records: list) -> list:
  seen, out = set(), []
  for r in records:
    key = tuple(r.image_files()) or ("image_key", str(r.meta.get("image_key", r.id)))
    if key not in seen:
      seen.add(key)
      out.append(r)
  return out


def _require(row: dict, fields, where: str):
  missing = [f for f in fields if f not in row]
  if missing:
    raise ValueError(f"{where}: missing field(s) {missing}")


def load_lingoqa(root: str, split: str = "val", authors_order: bool = False) -> list:
  """LingoQA -> 'auto-driving' records with the frames of each segment as `image_paths`.
  authors_order: every row a record, in the authors' order (module docstring); else rows sharing a
  question_id merged into one record with all their answers, in file order."""
  import pandas as pd
  path = _first_existing([os.path.join(root, f"{split}.parquet"), os.path.join(root, split, f"{split}.parquet")],
                         f"LingoQA {split} parquet")
  df = pd.read_parquet(path)
  answer_col = "answers" if "answers" in df.columns else "answer"
  _require({c: 1 for c in df.columns}, ("question_id", "question", answer_col, "images"), path)
  base, merged, rows = os.path.dirname(path), {}, []
  for n, row in enumerate(df.to_dict("records")):
    qid, where = str(row["question_id"]), f"{path} row {n}"
    answers = parse_list(row[answer_col], answer_col, where, split_bar=False)
    frames = parse_list(row["images"], "images", where, split_bar=False)
    rows.append((qid, answers, dict(domain="auto-driving", question=str(row["question"]),
                                    image_paths=[os.path.join(base, p) for p in frames],
                                    meta={"segment_id": str(row.get("segment_id", "")), "row": n})))
    if qid in merged:
      merged[qid]["answers"] += [a for a in answers if a not in merged[qid]["answers"]]
    else:
      merged[qid] = dict(id=qid, answers=list(answers), **rows[-1][2])
  if not authors_order:
    return [VQARecord(**m) for m in merged.values()]
  seen, out = {}, []
  for n in authors_permutation("auto-driving", len(rows)):
    qid, answers, fields = rows[n]
    k = seen[qid] = seen.get(qid, -1) + 1
    rest = [a for a in merged[qid]["answers"] if a not in answers]
    out.append(VQARecord(id=qid if k == 0 else f"{qid}#{k}", answers=answers + rest, **fields))
  return out


_CHOICE_PREFIX = re.compile(r"^\s*[A-Da-d]\s*[:.)]\s*")


def clean_choice(text) -> str:
  """'A:Fracture ' -> 'Fracture' (PMC-VQA stores choices with their letter)."""
  return _CHOICE_PREFIX.sub("", str(text)).strip()


def load_pmc_vqa(root: str, split: str = "test", one_per_image: bool = True, authors_order: bool = False) -> list:
  """PMC-VQA -> 'medical' multiple-choice records: `choices` = the four options (letters
  stripped; `meta['choices_raw']` as in the csv), `answers` = [Answer_label] (the option letter;
  the answer text when no label). authors_order: the csv twice, concatenated, in the authors'
  pandas order, then one question per image (the question text unstripped, as they read it)."""
  import pandas as pd
  path = _first_existing([os.path.join(root, f"{split}.csv")], f"PMC-VQA {split} csv")
  df = pd.read_csv(path, dtype=str, keep_default_na=False)
  df.columns = [c.strip() for c in df.columns]
  fields = ("Figure_path", "Question", "Answer", "Choice A", "Choice B", "Choice C", "Choice D", "Answer_label")
  _require({c: 1 for c in df.columns}, fields, path)
  dirs = [d for d in (os.path.join(root, "figures"), os.path.join(root, "images")) if os.path.isdir(d)] or [root]
  stem, records = os.path.splitext(os.path.basename(path))[0], []
  for n, row in enumerate(df.to_dict("records")):
    fig = row["Figure_path"] if authors_order else row["Figure_path"].strip()
    image = next((os.path.join(d, fig) for d in dirs if os.path.exists(os.path.join(d, fig))),
                 os.path.join(dirs[0], fig))
    label = row["Answer_label"].strip().upper()
    answers = [label] if label in ("A", "B", "C", "D") else [row["Answer"].strip()]
    records.append(VQARecord(
        id=f"pmc-vqa-{stem}-{n}", domain="medical", question=row["Question"] if authors_order else row["Question"].strip(),
        answers=answers, image_path=image, choices=[clean_choice(row[f"Choice {c}"]) for c in "ABCD"],
        meta={"answer_text": row["Answer"].strip(), "figure": fig,
              "choices_raw": [row[f"Choice {c}"] for c in "ABCD"]}))
  if authors_order:  # pd.concat([df, df]).sample(frac=1, random_state=42): row i and i + n are one row
    seen, order = set(), []
    for i in authors_permutation("medical", 2 * len(records)):
      if i % len(records) not in seen:
        seen.add(i % len(records))
        order.append(records[i % len(records)])
    records = order
  return _one_per_image(records) if one_per_image else records


def load_rsvqa_hr(root: str, split: str = "test", one_per_image: bool = True, authors_order: bool = False) -> list:
  """RSVQA-HR (USGS) -> 'remote-sensing' records; inactive questions are skipped (and, unless
  authors_order, questions on inactive images). `meta['first_answer']`: the answer of the
  question's first answer id (the authors' label)."""
  name = lambda kind: os.path.join(root, f"USGS_split_{split}_{kind}.json")
  questions = _load_json(_first_existing([name("questions")], f"RSVQA-HR {split} questions"), "questions")
  answer_list = _load_json(_first_existing([name("answers")], f"RSVQA-HR {split} answers"), "answers")
  answers = {a.get("id", i): a for i, a in enumerate(answer_list)}
  inactive = set()
  if os.path.exists(name("images")) and not authors_order:
    inactive = {im["id"] for im in _load_json(name("images"), "images") if not im.get("active", True)}
  img_dir = _first_existing([os.path.join(root, d) for d in ("Data", "images", "Images")] + [root],
                            "RSVQA-HR image folder")
  records = []
  for n, q in enumerate(questions):
    where = f"{name('questions')} question {n}"
    _require(q, ("id", "img_id", "question", "answers_ids"), where)
    if not q.get("active", True) or q["img_id"] in inactive:
      continue
    try:
      ans = [answers[i]["answer"] for i in q["answers_ids"] if answers[i].get("active", True)]
      first = str(answers[q["answers_ids"][0]]["answer"]) if q["answers_ids"] else ""
    except KeyError as e:
      raise ValueError(f"{where}: answer id {e} not in {name('answers')}") from e
    records.append(VQARecord(id=f"rsvqa-{q['id']}", domain="remote-sensing", question=q["question"],
                             answers=[str(a) for a in ans], image_path=os.path.join(img_dir, f"{q['img_id']}.png"),
                             meta={"type": q.get("type", ""), "first_answer": first}))
  if authors_order:
    records = _permute(records, "remote-sensing")
  return _one_per_image(records) if one_per_image else records


def load_vqav2(root: str, split: str = "val2014", one_per_image: bool = True, authors_order: bool = False) -> list:
  """VQAv2 -> 'common-scenes' records with all ten human answers (duplicates kept) and their
  `meta['answer_confidence']`."""
  qpath = _first_existing([os.path.join(root, f"v2_OpenEnded_mscoco_{split}_questions.json")], "VQAv2 questions")
  apath = _first_existing([os.path.join(root, f"v2_mscoco_{split}_annotations.json")], "VQAv2 annotations")
  anns = {a["question_id"]: a for a in _load_json(apath, "annotations")}
  img_dir = next((d for d in (os.path.join(root, split), os.path.join(root, "images", split)) if os.path.isdir(d)),
                 os.path.join(root, split))
  records = []
  for n, q in enumerate(_load_json(qpath, "questions")):
    _require(q, ("image_id", "question", "question_id"), f"{qpath} question {n}")
    ann = anns.get(q["question_id"])
    if ann is None:
      raise ValueError(f"{apath}: no annotation for question_id {q['question_id']}")
    records.append(VQARecord(
        id=str(q["question_id"]), domain="common-scenes", question=q["question"],
        answers=[a["answer"] for a in ann["answers"]],
        image_path=os.path.join(img_dir, f"COCO_{split}_{int(q['image_id']):012d}.jpg"),
        meta={"answer_type": ann.get("answer_type", ""), "multiple_choice_answer": ann.get("multiple_choice_answer", ""),
              "answer_confidence": [a.get("answer_confidence", "") for a in ann["answers"]]}))
  if authors_order:
    records = _permute(records, "common-scenes")
  return _one_per_image(records) if one_per_image else records


HF_SPLITS = {"val": "validation", "train": "train", "test": "test"}


def _docvqa_parquet(root: str, split: str) -> list:
  """The HF copy the authors loaded (pixparse/docvqa-single-page-questions: `data/<split>-*.parquet`,
  shards in name order = the dataset's row order), or [] when absent."""
  import glob
  import pandas as pd
  hf_split = HF_SPLITS.get(split, split)
  shards = sorted(glob.glob(os.path.join(root, "data", f"{hf_split}-*.parquet")))
  records = []
  for shard in shards:
    df = pd.read_parquet(shard)
    _require({c: 1 for c in df.columns}, ("question", "answers", "image"), shard)
    for row in df.to_dict("records"):
      n, image, other = len(records), row["image"], row.get("other_metadata")
      key = other.get("image") if isinstance(other, dict) else None
      records.append(VQARecord(
          id=str(row.get("questionId", f"docvqa-{hf_split}-{n}")), domain="documents", question=str(row["question"]),
          answers=parse_list(row["answers"], "answers", f"{shard} row {n}", split_bar=False),
          image_bytes=image.get("bytes") if isinstance(image, dict) else image,
          meta={"image_key": key if key is not None else f"row-{n}"}))
  return records


def load_docvqa(root: str, split: str = "val", one_per_image: bool = True, authors_order: bool = False) -> list:
  """DocVQA (single page) -> 'documents' records from `{split}_v1.0.json` (image paths relative to
  its folder), else from the HF copy the authors used (`data/{train,validation}-*.parquet` of
  pixparse/docvqa-single-page-questions; one per image by `other_metadata['image']`).
  authors_order: HF datasets' `shuffle(seed=42)` permutation of the rows (the authors shuffled the
  HF copy: exact on it; on the json, equal when the json's item order is the HF row order)."""
  jsons = [os.path.join(root, f"{split}_v1.0.json"), os.path.join(root, split, f"{split}_v1.0.json")]
  records = [] if any(os.path.exists(p) for p in jsons) else _docvqa_parquet(root, split)
  if not records:
    path = _first_existing(jsons, f"DocVQA {split} json (or data/{HF_SPLITS.get(split, split)}-*.parquet)")
    base = os.path.dirname(path)
    for n, d in enumerate(_load_json(path, "data")):
      _require(d, ("questionId", "question", "image"), f"{path} item {n}")
      records.append(VQARecord(id=str(d["questionId"]), domain="documents", question=d["question"],
                               answers=[str(a) for a in d.get("answers", [])],
                               image_path=os.path.join(base, d["image"]),
                               meta={"question_types": d.get("question_types", [])}))
  if authors_order:
    records = _permute(records, "documents")
  return _one_per_image(records) if one_per_image else records


LOADERS = {"auto-driving": load_lingoqa, "medical": load_pmc_vqa, "remote-sensing": load_rsvqa_hr,
           "common-scenes": load_vqav2, "documents": load_docvqa}


def dataset_dir(root: str, domain: str) -> str:
  """The folder holding `domain`'s dataset under `root` (see SUBDIRS)."""
  return _first_existing([os.path.join(root, s) for s in SUBDIRS[domain]], f"{domain} dataset folder")


def load_all(root: str, n_per_domain: int | None = None, split: str = "val", domains=DOMAINS,
             order: str = "sha256") -> list:
  """All domains' records from `root/<dataset folder>` (SUBDIRS), the first `n_per_domain` of each.
  order 'authors': each loader's `authors_order` (the authors' row set and order); 'sha256': file
  order (the caller shuffles with `records.deterministic_shuffle`)."""
  if split not in SPLITS:
    raise ValueError(f"split={split!r}; expected one of {sorted(SPLITS)}")
  if order not in ORDERS:
    raise ValueError(f"order={order!r}; expected one of {ORDERS}")
  out = []
  for domain in domains:
    if domain not in LOADERS:
      raise ValueError(f"unknown domain {domain!r}; expected one of {DOMAINS}")
    folder, errors = dataset_dir(root, domain), []
    for name in SPLITS[split][domain]:
      try:
        recs = LOADERS[domain](folder, name, authors_order=order == "authors")
        break
      except FileNotFoundError as e:
        errors.append(str(e))
    else:
      raise FileNotFoundError(f"{domain}: " + "; ".join(errors))
    out += recs[:n_per_domain] if n_per_domain else recs
  return out
