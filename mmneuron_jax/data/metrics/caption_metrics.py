"""Caption metrics in plain Python/numpy: the MINER authors' per-sample scores and COCO's corpus ones.

Authors' (MINER `utils/dataset.py` TextEvaluation; per caption, against each reference separately):
- `sentence_bleu`: NLTK `sentence_bleu([ref], hyp)` with `SmoothingFunction().method1` (epsilon 0.1 over
  the n-gram count for a zero precision), BLEU-4, uniform weights, whitespace tokens, case kept.
- `tfidf_cosine`: what the authors call "cider": scikit-learn `TfidfVectorizer()` defaults fitted on the
  references plus the caption (lowercase, tokens `\\b\\w\\w+\\b`, idf = ln((1+n)/(1+df)) + 1, l2 norm),
  then the cosine of the caption with each reference.
Standard (coco-caption, `pycocoevalcap`): corpus `bleu4` (BleuScorer, option "closest") and `cider_d`
(CiderScorer: n-grams 1-4, idf over the test set's reference sets, clipping, Gaussian length penalty with
sigma 6, x10). pycocoevalcap tokenises with Stanford's Java PTBTokenizer; `ptb_tokens` is a documented
pure-Python approximation (lowercase, clitics split as PTB does, PTB's punctuation list dropped).
"""
import collections
import math
import re

import numpy as np

# ---------------------------------------------------------------- tokenisers

# pycocoevalcap drops these PTB tokens after tokenising.
PTB_PUNCTUATION = {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--",
                   "...", ";"}
_CLITIC = re.compile(r"(\w)('s|'re|'ve|'m|'ll|'d)\b")
_NOT = re.compile(r"(\w)n't\b")
_BREAK = re.compile(r"[?!,:;\"`()\[\]{}]|\.(?!\d)|(?<!\d)\.")


def ptb_tokens(text: str) -> list:
  """Approximate Stanford PTBTokenizer + pycocoevalcap's punctuation removal: lowercase; "don't" ->
  "do n't", "it's" -> "it 's"; . , ? ! : ; quotes and brackets split off and dropped (a period inside a
  number stays); hyphenated words stay whole; a lone "-" or "--" is dropped."""
  s = _NOT.sub(r"\1 n't", str(text).lower().replace("\n", " "))
  s = _CLITIC.sub(r"\1 \2", s)
  s = _BREAK.sub(" ", s)
  out = []
  for tok in s.split():
    if tok not in ("'s", "'re", "'ve", "'m", "'ll", "'d", "n't"):
      tok = tok.strip("'")
    if tok and tok not in PTB_PUNCTUATION:
      out.append(tok)
  return out


_SKLEARN_TOKEN = re.compile(r"(?u)\b\w\w+\b")


def sklearn_tokens(text: str) -> list:
  """scikit-learn CountVectorizer's default analyzer: lowercase, words of 2+ word characters."""
  return _SKLEARN_TOKEN.findall(str(text).lower())


def ngram_counts(tokens: list, n: int) -> collections.Counter:
  """Counter of the n-grams (tuples) of one order."""
  return collections.Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


# ---------------------------------------------------------------- authors' per-sample scores

def sentence_bleu(reference: list, hypothesis: list, max_n: int = 4, epsilon: float = 0.1) -> float:
  """NLTK sentence_bleu([reference], hypothesis) with method1 smoothing (tokens in, float out).
  0 when no unigram matches or the hypothesis is empty, as NLTK."""
  numerators, denominators = [], []
  for n in range(1, max_n + 1):
    hyp = ngram_counts(hypothesis, n)
    ref = ngram_counts(reference, n)
    numerators.append(sum(min(c, ref[g]) for g, c in hyp.items()))
    denominators.append(max(1, sum(hyp.values())))
  if numerators[0] == 0:
    return 0.0
  log_p = [math.log((epsilon if num == 0 else num) / den) for num, den in zip(numerators, denominators)]
  c, r = len(hypothesis), len(reference)
  bp = 1.0 if c > r else math.exp(1 - r / c)
  return bp * math.exp(math.fsum(lp / max_n for lp in log_p))


def tfidf_cosine(hypothesis: str, references: list) -> list:
  """Cosine similarity of the caption with each reference under a TF-IDF fitted on references +
  caption (scikit-learn TfidfVectorizer defaults). 0 for a caption without any 2+ character word."""
  docs = [sklearn_tokens(r) for r in references] + [sklearn_tokens(hypothesis)]
  vocab = sorted({w for d in docs for w in d})
  if not vocab:
    return [0.0] * len(references)
  index = {w: i for i, w in enumerate(vocab)}
  tf = np.zeros((len(docs), len(vocab)))
  for row, doc in enumerate(docs):
    for w in doc:
      tf[row, index[w]] += 1
  df = (tf > 0).sum(0)
  idf = np.log((1 + len(docs)) / (1 + df)) + 1
  x = tf * idf
  norms = np.linalg.norm(x, axis=1, keepdims=True)
  x = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
  return [float(v) for v in x[:-1] @ x[-1]]


def authors_caption_scores(hypothesis: str, references: list) -> dict:
  """The authors' per-sample caption scores: bleu / tfidf ("cider") x max / min / mean over references."""
  hyp = str(hypothesis).split()
  bleu = [sentence_bleu(str(r).split(), hyp) for r in references]
  tfidf = tfidf_cosine(hypothesis, references)
  out = {}
  for name, vals in (("bleu", bleu), ("cider_tfidf", tfidf)):
    out.update({f"{name}_max": max(vals), f"{name}_min": min(vals), f"{name}_mean": float(np.mean(vals))})
  return out


# ---------------------------------------------------------------- COCO corpus scores

def corpus_bleu(hypotheses: list, references: list, max_n: int = 4) -> list:
  """pycocoevalcap BLEU-1..max_n over a corpus (token lists in): clipped n-gram matches summed over
  captions, "closest" reference length, its tiny/small guards. -> [bleu_1, ..., bleu_max_n]."""
  tiny, small = 1e-15, 1e-9
  correct, guess = [0] * max_n, [0] * max_n
  test_len = ref_len = 0
  for hyp, refs in zip(hypotheses, references):
    test_len += len(hyp)
    ref_len += min((abs(len(r) - len(hyp)), len(r)) for r in refs)[1]
    for k in range(max_n):
      counts = ngram_counts(hyp, k + 1)
      max_ref = collections.Counter()
      for r in refs:
        for g, c in ngram_counts(r, k + 1).items():
          max_ref[g] = max(max_ref[g], c)
      correct[k] += sum(min(c, max_ref[g]) for g, c in counts.items())
      guess[k] += max(0, len(hyp) - k)
  bleus, prod = [], 1.0
  for k in range(max_n):
    prod *= (correct[k] + tiny) / (guess[k] + small)
    bleus.append(prod ** (1.0 / (k + 1)))
  ratio = (test_len + tiny) / (ref_len + small)
  if ratio < 1:
    bleus = [b * math.exp(1 - 1 / ratio) for b in bleus]
  return bleus


def cider_d(hypotheses: list, references: list, n: int = 4, sigma: float = 6.0) -> tuple:
  """pycocoevalcap CIDEr(-D) of a corpus (token lists in). -> (mean score, float64[N] per caption)."""
  def grams(tokens):
    out = collections.Counter()
    for k in range(1, n + 1):
      out.update(ngram_counts(tokens, k))
    return out

  hyp_counts = [grams(h) for h in hypotheses]
  ref_counts = [[grams(r) for r in refs] for refs in references]
  df = collections.Counter()
  for refs in ref_counts:
    df.update({g for r in refs for g in r})
  log_n = math.log(float(len(ref_counts)))

  def vec(counts):
    v, norm, length = [dict() for _ in range(n)], [0.0] * n, 0
    for g, tf in counts.items():
      k = len(g) - 1
      v[k][g] = tf * (log_n - math.log(max(1.0, df[g])))
      norm[k] += v[k][g] ** 2
      if k == 1:
        length += tf
    return v, [math.sqrt(x) for x in norm], length

  scores = []
  for hc, rcs in zip(hyp_counts, ref_counts):
    vh, nh, lh = vec(hc)
    total = np.zeros(n)
    for rc in rcs:
      vr, nr, lr = vec(rc)
      for k in range(n):
        val = sum(min(w, vr[k].get(g, 0.0)) * vr[k].get(g, 0.0) for g, w in vh[k].items())
        if nh[k] != 0 and nr[k] != 0:
          val /= nh[k] * nr[k]
        total[k] += val * math.exp(-((lh - lr) ** 2) / (2 * sigma ** 2))
    scores.append(float(np.mean(total)) / len(rcs) * 10.0)
  scores = np.asarray(scores, np.float64)
  return (float(scores.mean()) if len(scores) else math.nan), scores
