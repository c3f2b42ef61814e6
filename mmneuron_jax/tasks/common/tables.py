"""Tables of the studies' reports: markdown for report.md, and CSV files beside the JSON results
(`<name>.csv` next to `<name>.json`; a file holding several tables: `<name>.<table>.csv`)."""
import csv
import json

from mmneuron_jax.io import paths


def md_table(header: list, rows: list) -> str:
  lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
  for r in rows:
    lines.append("| " + " | ".join(f"{x:.4g}" if isinstance(x, float) else str(x) for x in r) + " |")
  return "\n".join(lines)


def signed(x: float, digits: int = 3) -> str:
  """`x` with its sign at `digits` decimals; a value that rounds to zero is "+0.000", never "-0.000"."""
  text = f"{float(x):+.{digits}f}"
  return "+" + text[1:] if float(text) == 0 else text


# ---------------------------------------------------------------- CSV beside a JSON result file

def flat_row(row: dict, prefix: str = "") -> dict:
  """One CSV row from a JSON-able dict: nested dicts become dotted columns ({"a": {"b": 1}} -> "a.b"),
  lists stay whole as their JSON text, scalars as they are."""
  out = {}
  for k, v in row.items():
    key = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(flat_row(v, key + "."))
    elif isinstance(v, (list, tuple)):
      out[key] = json.dumps(v)
    else:
      out[key] = v
  return out


def write_csv(path: str, rows: list) -> str:
  """Rows (dicts) as CSV: columns in first-seen order over all rows, nested values through `flat_row`;
  floats as Python's shortest round-trip repr (the JSON's numbers exactly; NaN as `nan`), None as ''."""
  rows = [flat_row(r) for r in rows]
  columns = list(dict.fromkeys(k for r in rows for k in r))
  with paths.open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
  return path


def csv_path(json_path: str, table: str = "") -> str:
  """`<dir>/<name>.json` -> `<dir>/<name>.csv` (table '') or `<dir>/<name>.<table>.csv`."""
  stem = json_path[:-len(".json")] if json_path.endswith(".json") else json_path
  return f"{stem}.{table}.csv" if table else f"{stem}.csv"


def write_tables(json_path: str, tables: dict) -> list:
  """The tables of one JSON result file as CSV beside it ({table name: rows}, see `csv_path`); a table
  without rows is left out. -> the paths written."""
  return [write_csv(csv_path(json_path, name), rows) for name, rows in tables.items() if rows]
