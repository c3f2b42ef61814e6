"""Word error rate: the MINER authors' per-utterance WER and a standard, normalised corpus WER.

- `authors_wer(ref, hyp)` (MINER `Libri.wer`): both lowercased and stripped; if the reference occurs
  anywhere in the hypothesis (as a substring) the hypothesis is replaced by the reference (the authors'
  "remove unrelated prefix"); then word-level Levenshtein / #reference words on whitespace tokens, so
  punctuation counts ("hello," != "hello"). Their score is 1 - WER per utterance (it can be negative),
  averaged over utterances.
- `normalize_english`: an approximation of Whisper's `EnglishTextNormalizer` (the usual normaliser for
  LibriSpeech WER of LLM transcripts): lowercase, drop [..] <..> (..) spans and fillers (hmm, mm, mhm,
  mmm, uh, um), Whisper's contraction and title replacements, diacritics folded, punctuation and symbols
  to spaces, and cardinal number words to digits ("twenty one" -> "21", "one hundred and five" -> "105").
  Not reproduced: Whisper's full number normaliser (ordinals, years like "nineteen eighty four" -> "1984",
  decimals, currency, "oh"), and its British -> American spelling table (it needs Whisper's json file).
- `word_errors(ref, hyp)` -> (edits, #ref words) after `normalize_english`; corpus WER = sum edits / sum
  reference words.
The edit distance is `metrics.levenshtein`, which works on any sequences (here: lists of words).
"""
import re
import unicodedata

from mmneuron_jax.data.metrics.vqa_metrics import levenshtein


def authors_wer(reference: str, hypothesis: str) -> float:
  """MINER's WER of one utterance (see the module docstring). Raises on an empty reference."""
  ref, hyp = str(reference).lower().strip(), str(hypothesis).lower().strip()
  if ref in hyp:
    hyp = ref
  ref_words = ref.split()
  if not ref_words:
    raise ValueError("authors_wer: empty reference transcript")
  return levenshtein(ref_words, hyp.split()) / len(ref_words)


# ---------------------------------------------------------------- Whisper-style English normaliser

_FILLERS = re.compile(r"\b(hmm|mm|mhm|mmm|uh|um)\b")
_REPLACERS = [(re.compile(p), r) for p, r in [
    (r"\bwon't\b", "will not"), (r"\bcan't\b", "can not"), (r"\blet's\b", "let us"), (r"\bain't\b", "aint"),
    (r"\by'all\b", "you all"), (r"\bwanna\b", "want to"), (r"\bgotta\b", "got to"), (r"\bgonna\b", "going to"),
    (r"\bi'ma\b", "i am going to"), (r"\bimma\b", "i am going to"), (r"\bwoulda\b", "would have"),
    (r"\bcoulda\b", "could have"), (r"\bshoulda\b", "should have"), (r"\bma'am\b", "madam"),
    (r"\bmr\b", "mister "), (r"\bmrs\b", "missus "), (r"\bst\b", "saint "), (r"\bdr\b", "doctor "),
    (r"\bprof\b", "professor "), (r"\bcapt\b", "captain "), (r"\bgov\b", "governor "), (r"\bald\b", "alderman "),
    (r"\bgen\b", "general "), (r"\bsen\b", "senator "), (r"\brep\b", "representative "),
    (r"\bpres\b", "president "), (r"\brev\b", "reverend "), (r"\bhon\b", "honorable "),
    (r"\basst\b", "assistant "), (r"\bassoc\b", "associate "), (r"\blt\b", "lieutenant "),
    (r"\bcol\b", "colonel "), (r"\bjr\b", "junior "), (r"\bsr\b", "senior "), (r"\besq\b", "esquire "),
    (r"'d been\b", " had been"), (r"'s been\b", " has been"), (r"'d gone\b", " had gone"),
    (r"'s gone\b", " has gone"), (r"'d done\b", " had done"), (r"'s got\b", " has got"),
    (r"n't\b", " not"), (r"'re\b", " are"), (r"'s\b", " is"), (r"'d\b", " would"), (r"'ll\b", " will"),
    (r"'t\b", " not"), (r"'ve\b", " have"), (r"'m\b", " am"),
]]
_DIACRITICS = {"œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "ß": "ss", "ẞ": "SS", "đ": "d",
               "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "th", "ł": "l", "Ł": "L"}
_KEEP = ".%$¢€£"

ONES = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
TENS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)}
SCALES = {"thousand": 1000, "million": 10 ** 6, "billion": 10 ** 9}


def _symbols_and_diacritics(s: str) -> str:
  out = []
  for c in unicodedata.normalize("NFKD", s):
    cat = unicodedata.category(c)
    if c in _KEEP:
      out.append(c)
    elif c in _DIACRITICS:
      out.append(_DIACRITICS[c])
    elif cat == "Mn":
      continue
    else:
      out.append(" " if cat[0] in "MSP" else c)
  return "".join(out)


def words_to_digits(text: str) -> str:
  """Runs of cardinal number words -> digits: "twenty one" -> "21", "three hundred and five" -> "305",
  "two thousand ten" -> "2010". A word that cannot extend the running number starts a new one
  ("nineteen eighty" -> "19 80"); "and" is consumed only between number words after a hundred/scale."""
  words, out, i = text.split(), [], 0
  while i < len(words):
    if words[i] not in ONES and words[i] not in TENS:
      out.append(words[i])
      i += 1
      continue
    total, current, last = 0, 0, None
    while i < len(words):
      w = words[i]
      if w == "and" and last in ("hundred", "scale") and i + 1 < len(words) and (
          words[i + 1] in ONES or words[i + 1] in TENS):
        i += 1
        continue
      small = current % 100
      if w in ONES and (last is None or last in ("hundred", "scale") or (last == "tens" and ONES[w] < 10)):
        current += ONES[w]
        last = "ones" if ONES[w] < 10 else "teens"
      elif w in TENS and (last is None or last in ("hundred", "scale")) and small == 0:
        current += TENS[w]
        last = "tens"
      elif w == "hundred" and last in ("ones", "teens", "tens") and current < 100:
        current *= 100
        last = "hundred"
      elif w in SCALES and last in ("ones", "teens", "tens", "hundred") and current < 1000:
        total += current * SCALES[w]
        current, last = 0, "scale"
      else:
        break
      i += 1
    out.append(str(total + current))
  return " ".join(out)


def normalize_english(text: str) -> str:
  """Whisper-style English normalisation, approximated (see the module docstring)."""
  s = str(text).lower()
  s = re.sub(r"[<\[][^>\]]*[>\]]", "", s)
  s = re.sub(r"\(([^)]+?)\)", "", s)
  s = _FILLERS.sub("", s)
  s = re.sub(r"\s+'", "'", s)
  for pattern, replacement in _REPLACERS:
    s = pattern.sub(replacement, s)
  s = re.sub(r"(\d),(\d)", r"\1\2", s)
  s = re.sub(r"\.([^0-9]|$)", r" \1", s)
  s = _symbols_and_diacritics(s)
  s = words_to_digits(s)
  s = re.sub(r"[.$¢€£]([^0-9])", r" \1", s)
  s = re.sub(r"([^0-9])%", r"\1 ", s)
  return " ".join(s.split())


def word_errors(reference: str, hypothesis: str) -> tuple:
  """(word edits, reference words) after `normalize_english` on both sides."""
  ref, hyp = normalize_english(reference).split(), normalize_english(hypothesis).split()
  return levenshtein(ref, hyp), len(ref)
