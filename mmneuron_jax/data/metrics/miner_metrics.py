"""MINER benchmark metrics: the authors' lenient ones (`primary`, the default) and the standard ones.

    per_sample = [score(name, generation, record) for generation, record in ...]   # dicts
    summary = aggregate(name, per_sample)  # mean of every numeric field, 'n', plus corpus metrics

`record` is a `miner_benchmarks.BenchRecord` (anything with `.references` or `.answers` works).
Authors' metrics follow huang-kc/MINER `utils/dataset.py`; standard ones are the usual references.

Per benchmark, `primary` = the authors' metric, then the standard one(s):
- text_vqa: `correct` = some answer, lowercased, is a substring of the lowercased generation (`check_acc`);
  standard `vqa_accuracy` (official VQA formula and answer normalisation, `metrics.vqa_accuracy`).
- coco_caption: `bleu_max` = max over references of NLTK sentence BLEU-4 (method1) against each one;
  also `bleu_min`/`_mean` and the TF-IDF cosines `cider_tfidf_max/min/mean` (their "cider"); standard
  corpus `bleu4` and `cider_d` (pycocoevalcap, on `caption_metrics.ptb_tokens`), in `aggregate`.
- mmlu: `correct` = the generation's first character equals the answer letter (case-sensitive);
  standard `letter_accuracy` = the first option letter found (`metrics.extract_letter`).
- msvd_qa: `correct` as text_vqa with the one answer; standard `exact_match` of VQA-normalised strings.
- libri: `wrr` = 1 - the authors' per-utterance WER (`asr_metrics.authors_wer`); standard corpus `wer`
  after `asr_metrics.normalize_english` (and `wrr_corpus` = 1 - wer), in `aggregate`.
- vocal_sound: `correct` = the label name ("Throat clearing") occurs in the generation, case-sensitive;
  standard `accuracy` = the first class name the generation mentions (any case, whole words) is the label.

The authors' COCO `sbert_similarity` needs a Sentence-BERT download and is not computed; which of their
COCO numbers the paper averages is not stated: `bleu_max` is our choice for `primary`.
"""
import math
import re

from mmneuron_jax.data.metrics import asr_metrics, caption_metrics
from mmneuron_jax.data.metrics.vqa_metrics import letter_accuracy, normalize_vqa, vqa_accuracy
from mmneuron_jax.data.sources.miner_benchmarks import VOCAL_LABELS, canonical_name


def _refs(record) -> list:
  refs = getattr(record, "references", None)
  return list(refs if refs is not None else getattr(record, "answers", []))


# ---------------------------------------------------------------- the authors' lenient checks

def contains_any(prediction: str, answers: list) -> float:
  """The authors' `check_acc`: 1 if some answer (lowercased) is a substring of the lowercased generation."""
  out = str(prediction).lower()
  return float(any(str(a).lower() in out for a in answers))


def first_char_match(prediction: str, letter: str) -> float:
  """The authors' MMLU check: `response[0] == answer` (an empty generation scores 0)."""
  prediction = str(prediction)
  return float(len(prediction) > 0 and prediction[0] == str(letter))


def label_in(prediction: str, label: str) -> float:
  """The authors' VocalSound check: `answer in response`, case-sensitive ("Cough" in "Cough.")."""
  return float(str(label) in str(prediction))


# ---------------------------------------------------------------- standard helpers

_CLASS_PATTERNS = [(re.compile(r"\b" + name.lower().replace(" ", r"\s+") + r"\b"), name)
                   for name in VOCAL_LABELS.values()]


def vocal_prediction(prediction: str) -> str | None:
  """The class the generation names first (any case, whole words, "-"/"_" as spaces), or None."""
  text = re.sub(r"[-_]", " ", str(prediction).lower())
  hits = [(m.start(), name) for pattern, name in _CLASS_PATTERNS for m in [pattern.search(text)] if m]
  return min(hits)[1] if hits else None


# ---------------------------------------------------------------- per sample

def _text_vqa(pred, refs):
  correct = contains_any(pred, refs)
  return {"primary": correct, "correct": correct, "vqa_accuracy": vqa_accuracy(pred, refs)}


def _coco(pred, refs):
  out = caption_metrics.authors_caption_scores(pred, refs)
  out["primary"] = out["bleu_max"]
  out["_corpus"] = {"hypothesis": caption_metrics.ptb_tokens(pred),
                    "references": [caption_metrics.ptb_tokens(r) for r in refs]}
  return out


def _mmlu(pred, refs):
  correct = first_char_match(pred, refs[0])
  return {"primary": correct, "correct": correct, "letter_accuracy": letter_accuracy(pred, refs)}


def _msvd(pred, refs):
  correct = contains_any(pred, refs[:1])
  exact = float(normalize_vqa(pred) == normalize_vqa(refs[0]))
  return {"primary": correct, "correct": correct, "exact_match": exact}


def _libri(pred, refs):
  wrr = 1.0 - asr_metrics.authors_wer(refs[0], pred)
  edits, words = asr_metrics.word_errors(refs[0], pred)
  return {"primary": wrr, "wrr": wrr, "wer_normalized": edits / words if words else math.nan,
          "_corpus": {"edits": edits, "ref_words": words}}


def _vocal(pred, refs):
  correct = label_in(pred, refs[0])
  return {"primary": correct, "correct": correct, "accuracy": float(vocal_prediction(pred) == refs[0])}


SCORERS = {"text_vqa": _text_vqa, "coco_caption": _coco, "mmlu": _mmlu, "msvd_qa": _msvd, "libri": _libri,
           "vocal_sound": _vocal}


def score(name: str, prediction: str, record) -> dict:
  """Every metric of one generation for benchmark `name`; 'primary' is the authors' metric. Fields
  starting with '_' hold data for corpus metrics (see `aggregate`)."""
  key = canonical_name(name)
  refs = _refs(record)
  if not refs:
    raise ValueError(f"{key}: record {getattr(record, 'id', '?')} has no references")
  return SCORERS[key]("" if prediction is None else str(prediction), refs)


def aggregate(name: str, per_sample: list) -> dict:
  """Mean of every numeric field over samples (NaNs for none), 'n', and corpus metrics: coco_caption
  `bleu4`, `cider_d`; libri `wer` (total edits / total reference words, normalised) and `wrr_corpus`."""
  key = canonical_name(name)
  per_sample = list(per_sample)
  fields = [k for k in (per_sample[0] if per_sample else {}) if not k.startswith("_")]
  out = {k: math.fsum(s[k] for s in per_sample) / len(per_sample) for k in fields}
  out["n"] = len(per_sample)
  if key == "coco_caption":
    hyps = [s["_corpus"]["hypothesis"] for s in per_sample]
    refs = [s["_corpus"]["references"] for s in per_sample]
    out["bleu4"] = caption_metrics.corpus_bleu(hyps, refs)[3] if per_sample else math.nan
    out["cider_d"] = caption_metrics.cider_d(hyps, refs)[0] if per_sample else math.nan
  if key == "libri":
    words = sum(s["_corpus"]["ref_words"] for s in per_sample)
    out["wer"] = sum(s["_corpus"]["edits"] for s in per_sample) / words if words else math.nan
    out["wrr_corpus"] = 1.0 - out["wer"]
  if not per_sample:
    out["primary"] = math.nan
  return out
