"""Word error rate: the MINER authors' per-utterance WER and a standard, normalised corpus WER.

- `authors_wer(ref, hyp)` (MINER `Libri.wer`): both lowercased and stripped; if the reference occurs
  anywhere in the hypothesis (as a substring) the hypothesis is replaced by the reference (the authors'
  "remove unrelated prefix"); then word-level Levenshtein / #reference words on whitespace tokens, so
  punctuation counts ("hello," != "hello"). Their score is 1 - WER per utterance (it can be negative),
  averaged over utterances. The authors used no text normaliser.
- `normalize_english`: Whisper's `EnglishTextNormalizer` (the usual normaliser for LibriSpeech WER of
  LLM transcripts, so the corpus WER compares with published numbers), as shipped by transformers, with
  Whisper's British -> American spelling map bundled in `mmneuron_jax/third_party/whisper/english.json`
  (MIT): lowercase; [..] <..> (..) spans and fillers dropped; contractions and titles expanded;
  diacritics folded; punctuation to spaces; numbers to digits ("nineteen eighty four" -> "1984",
  "third" -> "3rd", "twenty one dollars" -> "$21"); "colour" -> "color". Surrounding spaces stripped.
- `word_errors(ref, hyp)` -> (edits, #ref words) after `normalize_english`; corpus WER = sum edits / sum
  reference words (what `jiwer.wer` gives on lists of normalised strings).
The edit distance is `metrics.levenshtein`, which works on any sequences (here: lists of words).
"""
import functools
import json
import os

from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

from mmneuron_jax.data.metrics.vqa_metrics import levenshtein

SPELLING_MAP = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                            "third_party", "whisper", "english.json")


def authors_wer(reference: str, hypothesis: str) -> float:
  """MINER's WER of one utterance (see the module docstring). Raises on an empty reference."""
  ref, hyp = str(reference).lower().strip(), str(hypothesis).lower().strip()
  if ref in hyp:
    hyp = ref
  ref_words = ref.split()
  if not ref_words:
    raise ValueError("authors_wer: empty reference transcript")
  return levenshtein(ref_words, hyp.split()) / len(ref_words)


# ---------------------------------------------------------------- Whisper's English normaliser

def spelling_map() -> dict:
  """Whisper's British -> American spelling map (the bundled `english.json`)."""
  if not os.path.isfile(SPELLING_MAP):
    raise FileNotFoundError(f"Whisper's spelling map is missing: {SPELLING_MAP} (it ships with the package)")
  with open(SPELLING_MAP, encoding="utf-8") as f:
    return json.load(f)


@functools.lru_cache(maxsize=1)
def whisper_normalizer() -> EnglishTextNormalizer:
  """Whisper's `EnglishTextNormalizer` with the bundled spelling map (built once)."""
  return EnglishTextNormalizer(spelling_map())


def normalize_english(text: str) -> str:
  """Whisper's English normalisation of one transcript (see the module docstring)."""
  return whisper_normalizer()(str(text)).strip()


def word_errors(reference: str, hypothesis: str) -> tuple:
  """(word edits, reference words) after `normalize_english` on both sides."""
  ref, hyp = normalize_english(reference).split(), normalize_english(hypothesis).split()
  return levenshtein(ref, hyp), len(ref)
