"""Placeholder expansion and decoding shared by the Qwen2-VL / Qwen2-Audio input builders."""
import numpy as np
import pytest

from mmneuron_jax.data.inputs import token_rows
from mmneuron_jax.data.inputs.qwen2_audio import build_batch as audio_batch
from mmneuron_jax.data.inputs.qwen2_vl import build_batch as image_batch

P = 9


def reference(rows, counts):
  """Plain numpy: split each row at its placeholders and insert runs of P."""
  out, k = [], 0
  for row in rows:
    row = np.asarray(row)
    pieces = np.split(row, np.nonzero(row == P)[0])
    new = list(pieces[0])
    for piece in pieces[1:]:
      new += [P] * counts[k] + list(piece[1:])
      k += 1
    out.append(new)
  return out


def test_expand_rows_matches_reference():
  rows = [[1, P, 2, P, 3], [4, 5], [P]]
  counts = [3, 1, 2]
  assert token_rows.expand_rows(rows, counts, P, "image", "image_grid_thw") == reference(rows, counts)


def test_errors_name_the_items_and_field():
  with pytest.raises(ValueError, match=r"a row holds 2 audio placeholders \(9\) but 1 audios"):
    token_rows.expand_placeholders([P, P], [4], P, "audio")
  with pytest.raises(ValueError, match="rows hold 1 image placeholders but image_grid_thw has 2 images"):
    token_rows.expand_rows([[P]], [1, 2], P, "image", "image_grid_thw")


def test_builders_expand_by_grid_and_by_frames():
  grid = np.array([[1, 4, 6], [1, 2, 2]])  # 24 / 4 = 6 and 4 / 4 = 1 merged tokens
  batch = image_batch([[1, P, 2], [P]], np.zeros((28, 3)), grid, {"image_token_id": P}, "left")
  np.testing.assert_array_equal(batch["input_ids"], [[1] + [P] * 6 + [2], [0] * 7 + [P]])
  fam = np.zeros((1, 100), np.int32)
  fam[0, :37] = 1  # 37 mel frames -> 19 encoder frames -> 9 audio tokens
  batch = audio_batch([[5, P]], np.zeros((1, 4, 100)), fam, {"audio_token_index": P})
  np.testing.assert_array_equal(batch["input_ids"], [[5] + [P] * 9])
  with pytest.raises(ValueError, match="feature_attention_mask has 1 audios"):
    audio_batch([[5]], np.zeros((1, 4, 100)), fam, {"audio_token_index": P})


def test_decode_and_pad_id():
  class Tok:
    pad_token_id = None

    def decode(self, ids, skip_special_tokens):
      assert skip_special_tokens
      return " " + "-".join(map(str, ids)) + " "

  assert token_rows.decode(Tok(), np.array([[3, 4, -1], [-1, -1, 7]])) == ["3-4", "7"]
  assert token_rows.pad_id(Tok()) == 0
  tok = Tok()
  tok.pad_token_id = 5
  assert token_rows.pad_id(tok) == 5
