"""VQA accuracy, ANLS, letter accuracy and exact match against hand-computed values."""
import math

import pytest

from mmneuron_jax.data.metrics import vqa_metrics as M
from mmneuron_jax.data.sources.records import VQARecord


@pytest.mark.parametrize("raw,norm", [
    ("Two", "2"), ("two dogs", "2 dogs"), ("The cat.", "cat"), ("a red ball!", "red ball"),
    ("dont", "don't"), ("yes.", "yes"), ("1,000", "1000"), ("3.5", "3.5"), ("black/white", "black white"),
    ("left - right", "left right"), ("  none\n", "0"), ("isnt it", "isn't it"), ("t-shirt", "t shirt"),
])
def test_normalize_vqa(raw, norm):
  assert M.normalize_vqa(raw) == norm


def test_vqa_accuracy_official_formula():
  ten = ["2"] * 10
  assert M.vqa_accuracy("two", ten) == 1.0  # number words are normalised
  assert M.vqa_accuracy("2", ["two"] * 10) == 1.0
  # 2 of 10 annotators said "2": each leave-one-out subset of 9 has 1 or 2 matches
  mixed = ["2"] * 2 + ["3"] * 8
  assert M.vqa_accuracy("two", mixed) == pytest.approx((2 * (1 / 3) + 8 * (2 / 3)) / 10)  # = 0.6
  # 3 matches: subsets holding all 3 give 1, the 3 subsets missing one give 2/3
  assert M.vqa_accuracy("yes", ["yes"] * 3 + ["no"] * 7) == pytest.approx((3 * (2 / 3) + 7) / 10)  # = 0.9
  assert M.vqa_accuracy("Yes.", ["yes"] * 4 + ["no"] * 6) == 1.0
  assert M.vqa_accuracy("maybe", ["yes"] * 10) == 0.0
  assert M.vqa_accuracy("dog", ["dog", "puppy", "dog", "dogs", "dog", "dog", "puppy", "dog", "dog", "dog"]) == 1.0
  assert M.vqa_accuracy("puppy", ["dog", "puppy", "dog", "dogs", "dog", "dog", "puppy", "dog", "dog", "dog"]) == \
      pytest.approx((2 * (1 / 3) + 8 * (2 / 3)) / 10)
  # fewer than 4 answers: any match
  assert M.vqa_accuracy("the cat", ["cat"]) == 1.0 and M.vqa_accuracy("dog", ["cat", "kitten"]) == 0.0
  assert M.vqa_accuracy("x", []) == 0.0


def test_anls():
  assert M.levenshtein("kitten", "sitting") == 3 and M.levenshtein("", "abc") == 3
  assert M.anls("Hello", ["hello "]) == 1.0  # lowercase and strip
  assert M.anls("abcd", ["abce"]) == pytest.approx(0.75)  # NL 0.25
  assert M.anls("abcd", ["abef"]) == 0.0  # NL 0.5 is not < 0.5
  assert M.anls("abcd", ["abef"], threshold=1.0) == pytest.approx(0.5)
  assert M.anls_authors("abcdefghij", ["abxxxxxxxx"]) == pytest.approx(0.2)  # NL 0.8 still counts
  assert M.anls("abcdefghij", ["abxxxxxxxx"]) == 0.0
  assert M.anls("xyz", ["abc"], threshold=1.0) == 0.0  # nothing in common
  assert M.anls("1990", ["January 2", "1/2/1990", "1990"]) == 1.0  # max over answers
  assert M.anls("a  b", ["A B"]) == 1.0  # whitespace collapsed
  assert M.anls("anything", []) == 0.0


@pytest.mark.parametrize("pred,letter", [
    ("B", "B"), ("b", "B"), ("(B)", "B"), ("B.", "B"), ("B. Liver", "B"), ("C) Lung", "C"), ("D: Brain", "D"),
    ("The answer is B", "B"), ("The correct answer is (C).", "C"), ("Answer: D", "D"), ("option A", "A"),
    ("I think it is (A) here", "A"), ("It is C.", "C"), ("A cat sitting on a mat", None), ("Liver", None),
    ("A. CT scan", "A"), ("A", "A"), ("  [D]  ", "D"), ("CT", None), ("B Liver", "B"),
])
def test_extract_letter(pred, letter):
  assert M.extract_letter(pred) == letter


def test_letter_and_exact_match():
  assert M.letter_accuracy("(B) CT", ["B"]) == 1.0 and M.letter_accuracy("A", ["B"]) == 0.0
  assert M.letter_accuracy("no letter", ["B"]) == 0.0 and M.letter_accuracy("b", ["(B)"]) == 1.0
  assert M.exact_match("Yes.", ["yes"]) == 1.0 and M.exact_match(" New  York ", ["new york"]) == 1.0
  assert M.exact_match("2", ["two"]) == 0.0 and M.exact_match("x", []) == 0.0


def test_score_all():
  recs = [VQARecord("1", "common-scenes", "q", ["2"] * 10), VQARecord("2", "medical", "q", ["B"], choices=list("wxyz")),
          VQARecord("3", "documents", "q", ["abcd"]), VQARecord("4", "remote-sensing", "q", ["yes"])]
  got = M.score_all(["two", "The answer is B", "abce", "Yes"], recs)
  assert set(got) == {"vqa_accuracy", "anls", "anls_1.0", "letter_accuracy", "exact_match", "authors", "standard",
                      "primary"}
  assert got["standard"] == pytest.approx((1 + 1 + 0.75 + 1) / 4)
  # the authors': "two" != "2" (no normalisation), any "B" character, ANLS 1.0, lowercased match
  assert got["authors"] == got["primary"] == pytest.approx((0 + 1 + 0.75 + 1) / 4)
  assert M.score_all(["two", "The answer is B", "abce", "Yes"], recs, primary="standard")["primary"] == \
      pytest.approx(got["standard"])
  assert got["vqa_accuracy"] == pytest.approx((1 + 0 + 0 + 1) / 4)
  assert got["exact_match"] == pytest.approx(1 / 4)  # only "Yes" == "yes" (no number-word mapping here)
  assert got["letter_accuracy"] == pytest.approx(1 / 4)
  assert M.score_record("two", recs[0], "standard")["primary"] == 1.0
  with pytest.raises(ValueError, match="2 predictions for 4 records"):
    M.score_all(["a", "b"], recs)
  assert all(math.isnan(v) for v in M.score_all([], []).values())
