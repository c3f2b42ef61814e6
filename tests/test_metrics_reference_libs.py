"""The metrics against the libraries they reproduce: Whisper's English normaliser (transformers' copy with
the bundled spelling map), jiwer (WER), NLTK (sentence and corpus BLEU; no NLTK corpora needed) and
scikit-learn (TF-IDF cosine, accuracy). Exact up to float rounding unless a tolerance says otherwise."""
import hashlib
import json

import numpy as np
import pytest
from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

from mmneuron_jax.data.metrics import asr_metrics as A, caption_metrics as C, miner_metrics as M
from mmneuron_jax.data.metrics.vqa_metrics import extract_letter
from mmneuron_jax.data.sources import miner_benchmarks as B

jiwer = pytest.importorskip("jiwer", reason="jiwer is in the test extra")
bleu_score = pytest.importorskip("nltk.translate.bleu_score", reason="nltk is in the test extra")
sklearn_text = pytest.importorskip("sklearn.feature_extraction.text", reason="scikit-learn is in the test extra")
sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is in the test extra")

WHISPER_MAP_SHA256 = "6607f948be9824d2e1b2fa2223cd94c06c45afa4e05ea0e3d5e1f2bdffde2465"
TRICKY = ["nineteen eighty four", "the third colour", "I'd been in the theatre, it's the centre.",
          "Twenty-one men and one hundred and five women", "It's twenty one dollars.", "two point five percent",
          "Mr. Smith won't go, uh, [noise] (laughs) today!", "the 1st of May, oh two", "Café déjà vu, œuvre",
          "one million two hundred thousand", "a half", "They organised a catalogue", "   ", "",
          "HE HOPED THERE WOULD BE STEW FOR DINNER TURNIPS AND CARROTS AND BRUISED POTATOES"]


def rec(name, refs):
  return B.BenchRecord(id="0", dataset=name, modality="text", prompt="p", references=list(refs))


def whisper():
  """transformers' EnglishTextNormalizer built here from the bundled file, independently of asr_metrics."""
  with open(A.SPELLING_MAP, encoding="utf-8") as f:
    return EnglishTextNormalizer(json.load(f))


# ---------------------------------------------------------------- Whisper's normaliser

def test_bundled_spelling_map_is_whispers():
  with open(A.SPELLING_MAP, "rb") as f:
    assert hashlib.sha256(f.read()).hexdigest() == WHISPER_MAP_SHA256  # openai/whisper english.json
  mapping = A.spelling_map()
  assert mapping["colour"] == "color" and mapping["theatre"] == "theater" and len(mapping) > 1000


@pytest.mark.parametrize("raw,norm", [("nineteen eighty four", "1984"), ("third", "3rd"), ("colour", "color"),
                                      ("twenty-first century", "21st century"), ("two point five", "2.5"),
                                      ("the centre of the catalogue", "the center of the catalog")])
def test_whisper_normaliser_hand_cases(raw, norm):
  assert A.normalize_english(raw) == norm


def test_normalize_english_equals_whisper():
  ref = whisper()
  for text in TRICKY:
    assert A.normalize_english(text) == ref(text).strip(), text


# ---------------------------------------------------------------- WER against jiwer

HYPS = ["He hoped there would be stew for dinner, turnips and carrots.", "nineteen eighty four",
        "the centre of the town", "It is 21 dollars", "", "Sure! The transcript: a b c d"]
REFS = ["HE HOPED THERE WOULD BE STEW FOR DINNER TURNIPS AND CARROTS AND BRUISED POTATOES", "1984",
        "THE CENTER OF THE TOWN", "IT'S TWENTY ONE DOLLARS", "A WORD", "A B C D"]


def test_corpus_and_per_utterance_wer_against_jiwer():
  rows = [M.score("libri", h, rec("libri", [r])) for h, r in zip(HYPS, REFS)]
  refs, hyps = [A.normalize_english(r) for r in REFS], [A.normalize_english(h) for h in HYPS]
  agg = M.aggregate("libri", rows)
  assert agg["wer"] == pytest.approx(jiwer.wer(refs, hyps), rel=1e-12)
  for row, r, h in zip(rows, refs, hyps):
    assert row["wer_normalized"] == pytest.approx(jiwer.wer(r, h), rel=1e-12)
  # "1984", "center", "$21": Whisper's normaliser maps these pairs together, so no edits
  assert [row["wer_normalized"] for row in rows[1:4]] == [0.0, 0.0, 0.0]


def test_authors_wer_against_jiwer():
  rng = np.random.default_rng(0)
  words = ["the", "cat", "sat", "on", "mat,", "Mat", "a"]
  for _ in range(40):
    ref = " ".join(rng.choice(words, rng.integers(1, 8)))
    hyp = " ".join(rng.choice(words, rng.integers(1, 8)))
    r, h = ref.lower().strip(), hyp.lower().strip()
    expected = 0.0 if r in h else jiwer.wer(r, h)  # the authors' "unrelated prefix" rule, then plain WER
    assert A.authors_wer(ref, hyp) == pytest.approx(expected, rel=1e-12), (ref, hyp)


# ---------------------------------------------------------------- BLEU against NLTK

CAPTIONS = [("A man rides a horse in a field.", ["A man riding a horse.", "A person on a brown horse in a field."]),
            ("Two dogs play with a ball.", ["Two dogs playing with a red ball on grass.", "Dogs chase a ball."]),
            ("A plate of food on a table.", ["A plate with food on a wooden table.", "Food sits on a plate.",
                                             "A meal on a table."]),
            ("a dog", ["A cat on a sofa.", "a dog"]), ("zebra", ["A cat on a sofa."])]


def test_sentence_bleu_against_nltk():
  smooth = bleu_score.SmoothingFunction().method1
  for hyp, refs in CAPTIONS:
    for ref in refs:
      want = bleu_score.sentence_bleu([ref.split()], hyp.split(), smoothing_function=smooth)
      assert C.sentence_bleu(ref.split(), hyp.split()) == pytest.approx(want, rel=1e-12, abs=1e-15), (hyp, ref)


def test_corpus_bleu4_against_nltk():
  hyps = [C.ptb_tokens(h) for h, _ in CAPTIONS[:3]]
  refs = [[C.ptb_tokens(r) for r in rs] for _, rs in CAPTIONS[:3]]
  want = bleu_score.corpus_bleu(refs, hyps)
  # pycocoevalcap's tiny / small guards (1e-15, 1e-9 on counts of ~10-30) move BLEU by < 1e-9 relative
  assert C.corpus_bleu(hyps, refs)[3] == pytest.approx(want, rel=1e-9)
  rows = [M.score("coco_caption", h, rec("coco_caption", rs)) for h, rs in CAPTIONS[:3]]
  assert M.aggregate("coco", rows)["bleu4"] == pytest.approx(want, rel=1e-9)


# ---------------------------------------------------------------- scikit-learn: TF-IDF cosine, accuracy

def test_tfidf_cosine_against_sklearn():
  for hyp, refs in CAPTIONS:
    x = sklearn_text.TfidfVectorizer().fit_transform(refs + [hyp])
    want = (x[:-1] @ x[-1].T).toarray()[:, 0]
    np.testing.assert_allclose(C.tfidf_cosine(hyp, refs), want, rtol=1e-12, atol=1e-15)
    got = C.authors_caption_scores(hyp, refs)
    assert got["cider_tfidf_max"] == pytest.approx(float(want.max()), rel=1e-12, abs=1e-15)


def test_accuracies_against_sklearn():
  labels = ["Cough", "Laughter", "Sigh", "Sneeze", "Sniff", "Throat clearing", "Cough", "Sigh"]
  preds = ["cough", "It is laughter.", "Sight", "a sneeze", "Sniff, sniff", "throat-clearing", "Laughter",
           "nothing"]
  rows = [M.score("vocal_sound", p, rec("vocal_sound", [y])) for p, y in zip(preds, labels)]
  agg = M.aggregate("vocal_sound", rows)
  named = [M.vocal_prediction(p) or "-" for p in preds]
  assert agg["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(labels, named), rel=1e-12)
  assert agg["correct"] == pytest.approx(sklearn_metrics.accuracy_score(
      [True] * len(preds), [y in p for p, y in zip(preds, labels)]), rel=1e-12)
  gold, answers = list("ABCDABCD"), ["A", "b", "The answer is C", "D.", "B", "", "C", "(A)"]
  rows = [M.score("mmlu", p, rec("mmlu", [g])) for p, g in zip(answers, gold)]
  agg = M.aggregate("mmlu", rows)
  assert agg["correct"] == pytest.approx(sklearn_metrics.accuracy_score(gold, [p[:1] for p in answers]))
  letters = [extract_letter(p) or "-" for p in answers]
  assert agg["letter_accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(gold, letters))
