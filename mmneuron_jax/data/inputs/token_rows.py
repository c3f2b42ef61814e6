"""Token-id rows of multimodal prompts, as the Qwen2 input builders need them: one placeholder id
per media item expanded to that item's run of tokens, and generated rows decoded back to text."""
import numpy as np


def expand_placeholders(row, counts, token_id: int, what: str) -> list[int]:
  """Token ids with one `token_id` per item -> the k-th one repeated `counts[k]` times.

  what: the items' name in errors ('image', 'audio')."""
  row = [int(t) for t in row]
  if row.count(token_id) != len(counts):
    raise ValueError(f"a row holds {row.count(token_id)} {what} placeholders ({token_id}) but {len(counts)} {what}s")
  out, k = [], 0
  for tok in row:
    if tok == token_id:
      out += [tok] * int(counts[k])
      k += 1
    else:
      out.append(tok)
  return out


def expand_rows(rows, counts, token_id: int, what: str, source: str) -> list[list[int]]:
  """Rows holding one `token_id` per item (items numbered in row order across rows) -> expanded rows.

  counts: int[N] tokens of every item; source: the input field they come from (named in errors)."""
  expanded, k = [], 0
  for row in rows:
    n = sum(int(t) == token_id for t in row)
    expanded.append(expand_placeholders(row, counts[k:k + n], token_id, what))
    k += n
  if k != len(counts):
    raise ValueError(f"rows hold {k} {what} placeholders but {source} has {len(counts)} {what}s")
  return expanded


def pad_id(tokenizer) -> int:
  """The tokenizer's pad id, 0 when it has none."""
  return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def decode(tokenizer, token_ids) -> list[str]:
  """int[B, N] new tokens (-1 = none) -> stripped strings without special tokens."""
  return [tokenizer.decode([t for t in row if t >= 0], skip_special_tokens=True).strip()
          for row in np.asarray(token_ids)]
