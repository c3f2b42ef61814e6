"""Markdown tables for the studies' report.md files."""


def md_table(header: list, rows: list) -> str:
  lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
  for r in rows:
    lines.append("| " + " | ".join(f"{x:.4g}" if isinstance(x, float) else str(x) for x in r) + " |")
  return "\n".join(lines)
