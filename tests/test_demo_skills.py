"""The learnable synthetic set (data/synthetic/skills.py): deterministic, answers follow from the drawn
facts, train and val share no image, and the existing demo set is unchanged by it."""
import hashlib
import io

import numpy as np
from PIL import Image

from mmneuron_jax.data.synthetic import demo, skills as demo_skills
from mmneuron_jax.data.sources.datasets import DOMAINS


def test_splits_are_disjoint_and_deterministic():
  train = demo_skills.skills_records(12, "train")
  val = demo_skills.skills_records(12, "val")
  digest = lambda r: hashlib.sha256(r.image_bytes).hexdigest()
  assert not {digest(r) for r in train} & {digest(r) for r in val}
  assert len({digest(r) for r in train}) == len(train)
  again = demo_skills.skills_sample("medical", 3, "val")
  assert again.image_bytes == val[DOMAINS.index("medical") * 12 + 3].image_bytes
  assert {r.id for r in train}.isdisjoint(r.id for r in val)


def test_answers_follow_from_the_facts_and_cover_the_answer_space():
  recs = demo_skills.skills_records(24, "train")
  for r in recs:
    facts = r.meta["facts"]
    answer = r.answers[0]
    assert answer in demo_skills.answer_space(r.domain), r.id
    expected = {"documents": lambda: facts["glyph"], "auto-driving": lambda: facts["car"],
                "remote-sensing": lambda: facts["land"],
                "medical": lambda: "ABCD"[r.choices.index(str(facts["lesions"]))],
                "common-scenes": lambda: facts["color"] if "colour" in r.question else facts["shape"]}[r.domain]()
    assert answer == expected, r.id
    w, h = Image.open(io.BytesIO(r.image_bytes)).size
    assert 200 <= w <= 320 and 200 <= h <= 320
  for d in DOMAINS:  # no domain's answers are all the same in 24 samples
    assert len({r.answers[0] for r in recs if r.domain == d}) >= 3, d


def test_medical_lesions_are_visible_bright_blobs():
  """The lesion count is readable from pixels: bright connected blobs (plain numpy flood fill)."""
  for i in range(6):
    r = demo_skills.skills_sample("medical", i, "val")
    arr = np.asarray(Image.open(io.BytesIO(r.image_bytes)).convert("L")) > 180
    seen, blobs = np.zeros_like(arr), 0
    for y, x in zip(*np.nonzero(arr)):
      if seen[y, x]:
        continue
      blobs, stack = blobs + 1, [(y, x)]
      while stack:
        cy, cx = stack.pop()
        if 0 <= cy < arr.shape[0] and 0 <= cx < arr.shape[1] and arr[cy, cx] and not seen[cy, cx]:
          seen[cy, cx] = True
          stack += [(cy + 1, cx), (cy - 1, cx), (cy, cx + 1), (cy, cx - 1)]
    assert blobs == r.meta["facts"]["lesions"], r.id


def test_existing_demo_set_unchanged():
  r = demo.demo_sample("documents", 0)
  assert r.id == "demo-documents-000" and r.meta["facts"]["title"].isupper()
