"""VQA metrics, each `f(prediction: str, answers: list[str]) -> float` in [0, 1].

- `vqa_accuracy`: the official VQAv2 formula. Prediction and answers go through the official
  normalisation (punctuation, number words, articles, contractions; EvalAI normalises every
  prediction before scoring, so we always normalise); then for each of the n answers,
  min(1, #matches among the other n-1 / 3), averaged (10-choose-9 for VQAv2). With fewer than 4
  answers a perfect score is impossible under that formula, so it is 1 for any match, 0 otherwise.
- `anls`: max over answers of 1 - NL if NL < threshold else 0, NL = Levenshtein / max length,
  after lowercasing, stripping and collapsing whitespace (DocVQA). `threshold=1.0` is the
  authors' variant (the `anls` package with threshold=1.0): any partial overlap counts.
- `letter_accuracy`: the first option letter found in the prediction equals a letter answer.
- `exact_match`: the normalised prediction equals a normalised answer.

The authors' per-domain metrics (their evaluate.py), `authors_score(prediction, record)`, are the
default 'primary' column; the standard one per domain (`PRIMARY_METRIC`) is the 'standard' column:
- common scenes (VQAv2): the lowercased prediction equals one of the lowercased answers whose
  `answer_confidence` is "yes" (records without `meta['answer_confidence']`: every answer counts);
- medical: some character of the prediction is an option letter A-E equal to the label (their loop
  adds 1 per matching character; read as "any", so a sample scores at most 1);
- remote sensing: the lowercased prediction equals the lowercased first answer (`meta['first_answer']`);
- documents: ANLS with threshold 1.0 (the `anls` package: lowercase, collapse whitespace);
- auto-driving: the authors used the Lingo-Judge model, not run here: NaN, and 'primary' falls
  back to the standard metric (ANLS).
"""
import math
import re

# ---------------------------------------------------------------- official VQA normalisation

CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at",
    "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've",
    "someone'dve": "someone'd've", "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's",
    "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}
NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = ("a", "an", "the")
# As in the official code, including its "(?!<=" typo (a lookahead, not a lookbehind).
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
_PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]


def _punctuation(text: str) -> str:
  out, drop = text, _COMMA_STRIP.search(text) is not None
  for p in _PUNCT:
    out = out.replace(p, "" if drop or p + " " in text or " " + p in text else " ")
  return _PERIOD_STRIP.sub("", out, count=32)  # the official code passes re.UNICODE (= 32) as count


def _digits_articles(text: str) -> str:
  words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
  return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


def normalize_vqa(text: str) -> str:
  """The official VQA answer normalisation (vqaEval.py processPunctuation + processDigitArticle)."""
  text = str(text).replace("\n", " ").replace("\t", " ").strip()
  return _digits_articles(_punctuation(text))


def vqa_accuracy(prediction: str, answers: list) -> float:
  """Official VQA accuracy: mean over answers i of min(1, #{j != i: a_j == pred} / 3)."""
  if not answers:
    return 0.0
  pred, gts = normalize_vqa(prediction), [normalize_vqa(a) for a in answers]
  hits = [g == pred for g in gts]
  if len(gts) < 4:
    return float(any(hits))
  total = sum(hits)
  return sum(min(1.0, (total - h) / 3.0) for h in hits) / len(gts)


# ---------------------------------------------------------------- ANLS

def levenshtein(a: str, b: str) -> int:
  """Edit distance (insert, delete, substitute; unit costs)."""
  if len(a) < len(b):
    a, b = b, a
  prev = list(range(len(b) + 1))
  for i, ca in enumerate(a, 1):
    cur = [i]
    for j, cb in enumerate(b, 1):
      cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
    prev = cur
  return prev[-1]


def _anls_text(text: str) -> str:
  return " ".join(str(text).strip().lower().split())


def normalized_levenshtein(a: str, b: str) -> float:
  """Levenshtein / max(len); 0 for two empty strings."""
  n = max(len(a), len(b))
  return levenshtein(a, b) / n if n else 0.0


def anls(prediction: str, answers: list, threshold: float = 0.5) -> float:
  """Average-normalised-Levenshtein similarity of one prediction: max over answers of
  1 - NL if NL < threshold else 0 (threshold 0.5: DocVQA; 1.0: the authors' variant)."""
  pred, best = _anls_text(prediction), 0.0
  for a in answers:
    nl = normalized_levenshtein(pred, _anls_text(a))
    best = max(best, 1.0 - nl if nl < threshold else 0.0)
  return best


def anls_authors(prediction: str, answers: list) -> float:
  """ANLS with threshold 1.0, as in the MMNeuron evaluation code."""
  return anls(prediction, answers, threshold=1.0)


# ---------------------------------------------------------------- letters and exact match

_PHRASE = re.compile(r"(?i:answer|option|choice)\s*(?:(?i:is|would be|should be)\s*)?[:\-]?\s*[\(\[]?([A-D])(?![A-Za-z])")
_START = re.compile(r"^[\s\(\[\"'*]*([A-D])\s*[\)\].:,]")
_START_WORD = re.compile(r"^\s*([B-D])\s|^\s*(A)\s+(?![a-z])")
_BRACKETED = re.compile(r"[\(\[]([A-D])[\)\]]")
_STANDALONE = re.compile(r"(?<![A-Za-z'])([A-D])(?![A-Za-z'])")


def extract_letter(prediction: str) -> str | None:
  """The first option letter A-D in a prediction: "B", "(B)", "B. text", "The answer is B"...
  A sentence-initial article ("A cat ...") is not a letter."""
  text = str(prediction).strip()
  bare = text.strip(" \t\n.:,;!?()[]{}\"'*")
  if len(bare) == 1 and bare.upper() in "ABCD":
    return bare.upper()
  for pattern in (_START, _START_WORD, _PHRASE, _BRACKETED):
    m = pattern.search(text)
    if m:
      return next(g for g in m.groups() if g)
  for m in _STANDALONE.finditer(text):
    sentence_start = not text[:m.start()].strip() or text[:m.start()].rstrip()[-1] in ".!?"
    if m.group(1) == "A" and sentence_start and re.match(r"\s+[a-z]", text[m.end():]):
      continue
    return m.group(1)
  return None


def letter_accuracy(prediction: str, answers: list) -> float:
  """1 if the prediction's first option letter is one of the single-letter answers."""
  gold = {str(a).strip().strip("().").upper() for a in answers}
  letter = extract_letter(prediction)
  return float(letter is not None and letter in gold)


def normalize_text(text: str) -> str:
  """Lowercase, collapse whitespace, strip surrounding punctuation and quotes."""
  return " ".join(str(text).lower().split()).strip(" .,;:!?\"'`")


def exact_match(prediction: str, answers: list) -> float:
  """1 if the normalised prediction equals a normalised answer."""
  pred = normalize_text(prediction)
  return float(any(pred == normalize_text(a) for a in answers))


# ---------------------------------------------------------------- per record and per set

METRICS = {"vqa_accuracy": vqa_accuracy, "anls": anls, "anls_1.0": anls_authors,
           "letter_accuracy": letter_accuracy, "exact_match": exact_match}
# The metric each domain is judged by (the authors judged LingoQA with the Lingo-Judge model,
# which needs a download; ANLS is the closest string metric).
PRIMARY_METRIC = {"auto-driving": "anls", "medical": "letter_accuracy", "remote-sensing": "exact_match",
                  "common-scenes": "vqa_accuracy", "documents": "anls"}


def _authors_vqav2(prediction: str, record) -> float:
  conf = record.meta.get("answer_confidence") if isinstance(record.meta, dict) else None
  answers = list(record.answers)
  if conf and len(conf) == len(answers):
    answers = [a for a, c in zip(answers, conf) if c == "yes"]
  return float(str(prediction).lower() in [str(a).lower() for a in answers])


def _authors_medical(prediction: str, record) -> float:
  label = str(record.answers[0]) if record.answers else ""
  return float(any(ch in "ABCDE" and ch == label for ch in str(prediction)))


def _authors_remote(prediction: str, record) -> float:
  first = record.meta.get("first_answer") if isinstance(record.meta, dict) else None
  first = first if first is not None else (record.answers[0] if record.answers else None)
  return float(first is not None and str(first).lower() == str(prediction).lower())


def _authors_documents(prediction: str, record) -> float:
  return anls(str(prediction).lower(), [str(a).lower() for a in record.answers], threshold=1.0)


AUTHORS_METRIC = {"medical": _authors_medical, "remote-sensing": _authors_remote, "common-scenes": _authors_vqav2,
                  "documents": _authors_documents}
PRIMARY_CHOICES = ("authors", "standard")


def authors_score(prediction: str, record) -> float:
  """The authors' metric for the record's domain (module docstring); NaN for a domain they judged
  by a model (auto-driving) or never scored."""
  fn = AUTHORS_METRIC.get(record.domain)
  return fn(prediction, record) if fn is not None else math.nan


def primary_metric(record) -> str:
  """PRIMARY_METRIC for the record's domain; other domains: letters if multiple choice, else VQA."""
  if record.domain in PRIMARY_METRIC:
    return PRIMARY_METRIC[record.domain]
  return "letter_accuracy" if record.choices else "vqa_accuracy"


def score_record(prediction: str, record, primary: str = "authors") -> dict:
  """Every metric of one prediction, plus 'authors' (`authors_score`), 'standard' (the domain's
  `primary_metric`) and 'primary': `primary` 'authors' (falling back to the standard metric where the
  authors' is NaN) or 'standard'."""
  if primary not in PRIMARY_CHOICES:
    raise ValueError(f"config.eval.metric={primary!r}; expected one of {PRIMARY_CHOICES}")
  scores = {name: fn(prediction, list(record.answers)) for name, fn in METRICS.items()}
  scores["authors"] = authors_score(prediction, record)
  scores["standard"] = scores[primary_metric(record)]
  use_authors = primary == "authors" and not math.isnan(scores["authors"])
  scores["primary"] = scores["authors"] if use_authors else scores["standard"]
  return scores


def score_all(predictions, records, primary: str = "authors") -> dict:
  """Mean of each metric (and 'authors', 'standard', 'primary') over records; NaN for an empty set."""
  predictions, records = list(predictions), list(records)
  if len(predictions) != len(records):
    raise ValueError(f"score_all: {len(predictions)} predictions for {len(records)} records")
  keys = list(METRICS) + ["authors", "standard", "primary"]
  if not records:
    return {k: math.nan for k in keys}
  rows = [score_record(p, r, primary) for p, r in zip(predictions, records)]
  return {k: sum(row[k] for row in rows) / len(rows) for k in keys}
