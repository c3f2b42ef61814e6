"""The records checked against the config before any model work (names, not indices).

- `near_miss_schema`: a column that looks like a misspelt required one (`answer` for `answers`)
  refuses the file naming the fix, instead of every record silently having no answers.
- `unusable_answers`: evaluation records whose answers are absent, `[]`, `""` or `[""]` are bad
  records with a reason (they would be scored 0 under every condition).
- `check_domains`: every configured domain has records; a near match (`Medical` vs `medical`) is
  named; records of domains the config does not list are reported.
"""
import difflib

from absl import logging

from mmneuron_jax.errors import UserError

# misspelt column -> the field it should be
NEAR_MISSES = {"answer": "answers", "Answers": "answers", "Answer": "answers", "label": "answers",
               "labels": "answers", "gt_answers": "answers", "questions": "question", "Question": "question",
               "Domain": "domain", "ID": "id", "Id": "id", "img": "image", "image_path": "image",
               "img_path": "image"}


def near_miss_schema(records, where: str) -> None:
  """Raise UserError when records carry a near-miss column (in `meta`) and lack the real field."""
  found = {}
  for r in records:
    for column in getattr(r, "meta", {}) or {}:
      if column in NEAR_MISSES:
        found.setdefault(column, NEAR_MISSES[column])
  for column, field in sorted(found.items()):
    if field == "answers" and any(r.answers for r in records):
      continue
    raise UserError(f"{where}: column {column!r} is not a records field; rename it to {field!r} "
                    f"(the records file schema: id, domain, question, answers, image)")


def usable_answers(answers) -> bool:
  return any(isinstance(a, str) and a.strip() for a in (answers or []))


def unusable_answers(records) -> tuple:
  """-> (records with at least one non-empty answer, bad [(id, reason)])."""
  good, bad = [], []
  for r in records:
    if usable_answers(r.answers):
      good.append(r)
    else:
      bad.append((r.id, f"no usable answer (answers={list(r.answers or [])!r}); evaluation needs one"))
  return good, bad


def check_domains(records, domains, where: str) -> None:
  """UserError naming each configured domain without records (with close record domains)."""
  have = {}
  for r in records:
    have[r.domain] = have.get(r.domain, 0) + 1
  missing = [d for d in domains if d not in have]
  if missing:
    parts = []
    for d in missing:
      close = [h for h in have if h.lower() == d.lower()] or difflib.get_close_matches(d, list(have), n=2)
      parts.append(f"{d!r}" + (f" (the records have {', '.join(map(repr, close))})" if close else ""))
    raise UserError(f"{where}: no records for configured domain(s) {', '.join(parts)}; the records' domains are "
                    f"{sorted(have)}. Fix config.data.domains or the records' domain column")
  extra = {d: n for d, n in have.items() if d not in domains}
  if extra:
    logging.warning("%s: records of domains not in config.data.domains are not used: %s", where, extra)
