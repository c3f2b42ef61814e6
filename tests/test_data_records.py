"""VQARecord reading (JSONL / CSV / parquet), image loading, validation and ordering."""
import base64
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mmneuron_jax.data.sources import records as R
from mmneuron_jax.data.sources.records import VQARecord


def _png(color, size=(8, 6)) -> bytes:
  buf = io.BytesIO()
  Image.new("RGB", size, color).save(buf, format="PNG")
  return buf.getvalue()


def _write_img(path, color, size=(8, 6)):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(_png(color, size))
  return path


ROWS = [
    {"id": "a", "domain": "documents", "question": "What?", "answers": ["x", "y"], "image": "img/a.png"},
    {"id": "b", "domain": "medical", "question": "Which?", "answers": '["B"]', "image": "img/b.png",
     "choices": "one|two|three|four"},
    {"id": "c", "domain": "common-scenes", "question": "How many?", "answers": "2|two|2", "image": "img/c.png"},
]


def _check_rows(recs, root):
  assert [r.id for r in recs] == ["a", "b", "c"]
  assert recs[0].answers == ["x", "y"] and recs[1].answers == ["B"] and recs[2].answers == ["2", "two", "2"]
  assert recs[1].choices == ["one", "two", "three", "four"] and recs[0].choices is None
  assert recs[0].image_path == os.path.join(root, "img/a.png")
  assert R.load_image(recs[0]).size == (8, 6)


def test_read_jsonl_csv_parquet(tmp_path):
  import pandas as pd
  for name in "abc":
    _write_img(str(tmp_path / "img" / f"{name}.png"), (10, 20, 30))
  jsonl = tmp_path / "r.jsonl"
  jsonl.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n\n")
  _check_rows(R.read_records(str(jsonl)), str(tmp_path))
  df = pd.DataFrame([{**r, "answers": json.dumps(r["answers"]) if isinstance(r["answers"], list) else r["answers"]}
                     for r in ROWS])
  df.to_csv(tmp_path / "r.csv", index=False)
  _check_rows(R.read_records(str(tmp_path / "r.csv")), str(tmp_path))
  pdf = pd.DataFrame([{**r, "answers": r["answers"] if isinstance(r["answers"], list) else [r["answers"]]}
                      for r in ROWS])
  pdf["answers"] = [["x", "y"], ["B"], ["2", "two", "2"]]
  pdf["choices"] = [None, ["one", "two", "three", "four"], None]
  pdf.to_parquet(tmp_path / "r.parquet")
  _check_rows(R.read_records(str(tmp_path / "r.parquet")), str(tmp_path))


def test_image_root_bytes_frames_and_meta(tmp_path):
  other = tmp_path / "elsewhere"
  _write_img(str(other / "p.png"), (255, 0, 0), (4, 3))
  _write_img(str(other / "q.png"), (0, 0, 255), (5, 2))
  rows = [{"id": 1, "domain": "d", "question": "q", "answers": "y", "image": "p.png", "source": "s1"},
          {"id": 2, "domain": "d", "question": "q", "answers": [], "images": ["p.png", "q.png"]},
          {"id": 3, "domain": "d", "question": "q", "image_bytes": base64.b64encode(_png((0, 255, 0))).decode()}]
  path = tmp_path / "r.jsonl"
  path.write_text("\n".join(json.dumps(r) for r in rows))
  recs = R.read_records(str(path), image_root=str(other))
  assert recs[0].id == "1" and recs[0].meta == {"source": "s1"} and recs[0].answers == ["y"]
  joined = R.load_image(recs[1])
  assert joined.size == (9, 3) and joined.mode == "RGB"
  arr = np.asarray(joined)
  assert tuple(arr[0, 0]) == (255, 0, 0) and tuple(arr[0, 4]) == (0, 0, 255) and tuple(arr[2, 4]) == (0, 0, 0)
  assert tuple(np.asarray(R.load_image(recs[2]))[0, 0]) == (0, 255, 0)
  # write_records round trip keeps everything (paths relative to the file when inside its folder)
  out = R.write_records(recs, str(other / "copy.jsonl"))
  assert R.read_records(out) == recs


def test_read_errors_name_file_and_field(tmp_path):
  bad = tmp_path / "bad.jsonl"
  bad.write_text(json.dumps({"id": "a", "question": "q", "image": "x.png"}) + "\n")
  with pytest.raises(ValueError, match=r"bad\.jsonl line 1.*'domain'"):
    R.read_records(str(bad))
  bad.write_text('{"id": "a", "domain": "d", "question": "q", "image": "x.png"}\n{oops\n')
  with pytest.raises(ValueError, match=r"bad\.jsonl line 2: invalid JSON"):
    R.read_records(str(bad))
  bad.write_text(json.dumps({"id": "a", "domain": "d", "question": "q"}) + "\n")
  with pytest.raises(ValueError, match="no image field"):
    R.read_records(str(bad))
  bad.write_text(json.dumps({"id": "a", "domain": "d", "question": "q", "image": "x", "answers": "[1,"}) + "\n")
  with pytest.raises(ValueError, match="'answers' is not a valid JSON list"):
    R.read_records(str(bad))
  (tmp_path / "bad.txt").write_text("x")
  with pytest.raises(ValueError, match=r"bad\.txt: unsupported records format"):
    R.read_records(str(tmp_path / "bad.txt"))
  with pytest.raises(FileNotFoundError, match="nope.jsonl"):
    R.read_records(str(tmp_path / "nope.jsonl"))


def test_validate_reports_and_skips(tmp_path):
  good = _write_img(str(tmp_path / "good.png"), (1, 2, 3))
  corrupt = tmp_path / "corrupt.png"
  corrupt.write_bytes(_png((1, 2, 3))[:40])
  recs = [VQARecord("ok", "d", "q?", ["a"], image_path=good),
          VQARecord("missing", "d", "q?", ["a"], image_path=str(tmp_path / "gone.png")),
          VQARecord("corrupt", "d", "q?", ["a"], image_path=str(corrupt)),
          VQARecord("frames", "d", "q?", ["a"], image_paths=[good, str(tmp_path / "gone2.png")]),
          VQARecord("empty", "d", "  ", ["a"], image_path=good),
          VQARecord("noimage", "d", "q?", ["a"]),
          VQARecord("badbytes", "d", "q?", ["a"], image_bytes=b"not an image"),
          VQARecord("ok", "d", "q?", ["a"], image_path=good)]
  ok, bad = R.validate(recs)
  assert [r.id for r in ok] == ["ok"]
  reasons = dict(bad[:-1])
  assert "gone.png" in reasons["missing"] and "not found" in reasons["missing"]
  assert "corrupt.png" in reasons["corrupt"] and "corrupt" in reasons["corrupt"]
  assert "gone2.png" in reasons["frames"]
  assert reasons["empty"] == "empty question"
  assert "no image" in reasons["noimage"] and "image_bytes" in reasons["badbytes"]
  assert bad[-1] == ("ok", "duplicate id (first at position 0)")
  with pytest.raises(R.BadImage, match="corrupt.png"):
    R.load_image(recs[2])
  # decode=False only checks existence
  assert [r.id for r in R.validate(recs[:3], decode=False)[0]] == ["ok", "corrupt"]


def _ids(n):
  return [VQARecord(f"id{i}", "d", "q", image_bytes=b"") for i in range(n)]


def test_deterministic_shuffle():
  recs = _ids(50)
  a = [r.id for r in R.deterministic_shuffle(recs, 0)]
  assert a == [r.id for r in R.deterministic_shuffle(recs[::-1], 0)]  # input order does not matter
  assert a != [r.id for r in R.deterministic_shuffle(recs, 1)] and a != [r.id for r in recs]
  assert sorted(a) == sorted(r.id for r in recs)
  sub = [i for i in a if i in {f"id{k}" for k in range(0, 50, 3)}]
  assert sub == [r.id for r in R.deterministic_shuffle(recs[::3], 0)]  # subsets keep their relative order
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  # load records.py by path: the package __init__ imports jax, which is slow to start
  code = ("import importlib.util as u, sys; s = u.spec_from_file_location('rec', sys.argv[1]); m = u.module_from_spec(s);"
          "s.loader.exec_module(m); print(','.join(r.id for r in m.deterministic_shuffle("
          "[m.VQARecord(f'id{i}', 'd', 'q') for i in range(50)], 0)))")
  for hashseed in ("1", "2"):
    out = subprocess.run([sys.executable, "-c", code, os.path.join(root, "mmneuron_jax", "data", "sources", "records.py")],
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": hashseed})
    assert out.stdout.strip().split(",") == a


def test_by_domain():
  recs = [VQARecord(f"{d}{i}", d, "q") for i in range(3) for d in ("y", "x")]
  got = R.by_domain(recs, 2)
  assert list(got) == ["y", "x"] and [r.id for r in got["x"]] == ["x0", "x1"]
  assert [len(v) for v in R.by_domain(recs).values()] == [3, 3]
  got = R.by_domain(recs, None, domains=["x", "z"])
  assert list(got) == ["x", "z"] and len(got["x"]) == 3 and got["z"] == []
