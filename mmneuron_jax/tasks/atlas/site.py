"""The atlas as a static site (no server, no CDN; opens from the file system):

  atlas/index.html          counts by module / layer / group; a paged, filterable neuron list and
                            search by id (client-side, over assets/index.js)
  atlas/index.json          the same index as JSON
  atlas/assets/             atlas.css, atlas.js, index.js (`window.ATLAS_INDEX = {...}`: file://
                            pages cannot fetch JSON, a script tag can load it)
  atlas/n/<id>.html         one page per neuron: histograms per group (inline SVG), top examples
                            (tiles + heatmap, shaded text), logit lens, effect of switching it off;
                            its data in <script type="application/json" id="neuron-data">
  atlas/img/                the example samples' tiles (loading="lazy")

Neuron ids read `<module>.L<layer>.N<index>`, e.g. `vision.L1.N27`.
"""
import html
import json
import os
import re

import numpy as np

from mmneuron_jax.tasks.atlas import assets

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf")


def neuron_id(module: str, layer: int, index: int) -> str:
  return f"{module}.L{int(layer)}.N{int(index)}"


def page_name(nid: str) -> str:
  return re.sub(r"[^A-Za-z0-9_-]", "_", nid) + ".html"


def histogram(above: np.ndarray, tokens: np.ndarray) -> np.ndarray:
  """above int[G, E] (tokens with act > edge e), tokens int[G] -> counts int[G, E + 1] per bin
  (-inf, e0], (e0, e1], ..., (e_last, inf)."""
  above, tokens = np.asarray(above, np.int64), np.asarray(tokens, np.int64)
  upper = np.concatenate([tokens[:, None], above], 1)
  lower = np.concatenate([above, np.zeros_like(tokens)[:, None]], 1)
  return upper - lower


def _svg_histogram(counts, edges, color: str, title: str) -> str:
  """Inline SVG bar chart of one group's bins (bar height ~ log(1 + count))."""
  w, h, n = 220, 70, len(counts)
  bw = w / n
  top = np.log1p(max(max(counts), 1))
  bars = []
  for i, c in enumerate(counts):
    bh = (h - 14) * np.log1p(c) / top
    lo = "-inf" if i == 0 else f"{edges[i - 1]:g}"
    hi = "inf" if i == n - 1 else f"{edges[i]:g}"
    bars.append(f'<rect x="{i * bw:.1f}" y="{h - 12 - bh:.1f}" width="{bw - 1:.1f}" height="{bh:.1f}" '
                f'fill="{color}"><title>({lo}, {hi}]: {c}</title></rect>')
  zero = 1 + list(edges).index(0.0) if 0.0 in edges else None
  axis = (f'<line x1="{zero * bw:.1f}" y1="0" x2="{zero * bw:.1f}" y2="{h - 12}" stroke="#999" '
          'stroke-dasharray="2,2"/>') if zero is not None else ""
  return (f'<svg class="hist" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{html.escape(title)}">'
          f'{"".join(bars)}{axis}<text x="0" y="{h - 1}" font-size="10">{html.escape(title)}</text></svg>')


def _example_html(ex: dict, module: str) -> str:
  parts = [f'<div class="example"><div class="meta">#{ex["rank"] + 1} &nbsp;<b>{ex["value"]:.4g}</b> &nbsp;'
           f'{html.escape(ex["record"])} &middot; {html.escape(ex["where"])}</div>']
  if ex.get("tiles"):
    parts.append('<div class="tiles">')
    for t in ex["tiles"]:
      parts.append(f'<span class="tile"><img class="photo" src="{t["src"]}" loading="lazy" alt="tile">'
                   f'<img class="heat" src="{t["heat"]}" alt="heatmap of {html.escape(module)}"></span>')
    parts.append("</div>")
  elif ex.get("strip"):
    parts.append(f'<img class="strip heat" src="{ex["strip"]}" alt="activation over tokens">')
  if ex.get("text"):
    vmax = max([abs(v) for _, v in ex["text"] if v is not None] + [1e-12])
    words = []
    for w, v in ex["text"]:
      if v is None:
        words.append(f'<span class="img-token">{html.escape(w)}</span>')
      else:
        a = max(0.0, v) / vmax
        words.append(f'<span class="tok" style="background:rgba(255,90,0,{a:.2f})" title="{v:.4g}">'
                     f'{html.escape(w)}</span>')
    parts.append(f'<div class="text">{"".join(words)}</div>')
  parts.append("</div>")
  return "".join(parts)


def neuron_page(data: dict, asset_prefix: str = "../assets", index_href: str = "../index.html") -> str:
  """The HTML page of one neuron from its page data (see `build_site`)."""
  groups = data["group_names"]
  title = f'{data["id"]} — {html.escape(data["model_id"])}'
  out = [f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(data["id"])}</title>'
         f'<link rel="stylesheet" href="{asset_prefix}/atlas.css"></head><body>',
         f'<nav><a href="{index_href}" id="home">atlas index</a>'
         + (f' &middot; <a href="{page_name(data["prev"])}" id="prev">prev</a>' if data.get("prev") else "")
         + (f' &middot; <a href="{page_name(data["next"])}" id="next">next</a>' if data.get("next") else "")
         + "</nav>",
         f"<h1>{title}</h1>",
         f'<p>module <b>{html.escape(data["module"])}</b>, layer {data["layer"]}, neuron {data["index"]}; '
         f'selected for: <b>{html.escape(", ".join(data["member"]) or "-")}</b></p>']
  out.append("<h2>Activations per group</h2><div class='hists'>")
  for g, name in enumerate(groups):
    counts = data["hist"]["counts"][g]
    out.append(_svg_histogram(counts, data["hist"]["edges"], COLORS[g % len(COLORS)],
                              f'{name}: {sum(counts)} tokens, max {data["max"][g]:.3g}'))
  out.append("</div>")
  if data.get("effect") is not None:
    cells = "".join(f"<td>{'' if e is None else f'{e:+.4g}'}</td>" for e in data["effect"])
    out.append("<h2>Switched off: first-order change of the held-out answer loss (nats / answer token)</h2>"
               f"<table class='effect'><tr>{''.join(f'<th>{html.escape(g)}</th>' for g in groups)}</tr>"
               f"<tr>{cells}</tr></table>")
  if data.get("lens"):
    toks = " ".join(f'<code title="{v:.3g}">{html.escape(t)}</code>' for t, v in data["lens"])
    out.append(f"<h2>Logit lens: tokens its output direction promotes</h2><p class='lens'>{toks}</p>")
  out.append("<h2>Top examples</h2>")
  for g, name in enumerate(groups):
    exs = data["top"].get(str(g), [])
    out.append(f'<h3 style="color:{COLORS[g % len(COLORS)]}">{html.escape(name)}</h3>')
    out.append("".join(_example_html(e, data["module"]) for e in exs) or "<p class='none'>no tokens</p>")
  out.append(f'<script type="application/json" id="neuron-data">{_json_for_script(data)}</script>')
  out.append("</body></html>")
  return "\n".join(out)


def _json_for_script(obj) -> str:
  return json.dumps(obj, separators=(",", ":")).replace("</", "<\\/")


def index_page(index: dict) -> str:
  groups = index["group_names"]
  rows = []
  for m, per_layer in index["counts"].items():
    for layer, counts in sorted(per_layer.items(), key=lambda kv: int(kv[0])):
      rows.append(f"<tr><td>{html.escape(m)}</td><td>{layer}</td>"
                  + "".join(f"<td>{counts[g]}</td>" for g in range(len(groups))) + "</tr>")
  head = "".join(f"<th>{html.escape(g)}</th>" for g in groups)
  return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Neuron atlas — {html.escape(index["model_id"])}</title>
<link rel="stylesheet" href="assets/atlas.css"></head><body>
<h1>Neuron atlas — {html.escape(index["model_id"])}</h1>
<p>{index["total"]} neurons of {len(index["counts"])} module(s); groups: {html.escape(", ".join(groups))}. Sets: {html.escape(index["source"])}.</p>
<div class="search"><input id="search" type="search" placeholder="search by id, e.g. vision.L1.N27" autocomplete="off">
<ul id="results"></ul></div>
<h2>Neurons per module, layer and group</h2>
<table class="counts"><tr><th>module</th><th>layer</th>{head}</tr>{"".join(rows)}</table>
<h2>Neurons</h2>
<div class="filters"><select id="f-module"></select><select id="f-layer"></select><select id="f-group"></select>
<span id="page-info"></span> <button id="prev-page">&laquo;</button><button id="next-page">&raquo;</button></div>
<table class="neurons" id="neurons"><thead><tr><th>id</th><th>groups</th><th>max activation per group</th><th>effect off (own group)</th></tr></thead><tbody></tbody></table>
<script src="assets/index.js"></script><script src="assets/atlas.js"></script>
</body></html>
"""


def write(atlas_dir: str, index: dict, pages: list) -> str:
  """Write the site: index (dict, see `build`), pages [page data]. Returns index.html's path."""
  os.makedirs(os.path.join(atlas_dir, "n"), exist_ok=True)
  os.makedirs(os.path.join(atlas_dir, "assets"), exist_ok=True)
  for name, text in (("atlas.css", assets.CSS), ("atlas.js", assets.JS)):
    with open(os.path.join(atlas_dir, "assets", name), "w") as f:
      f.write(text)
  with open(os.path.join(atlas_dir, "assets", "index.js"), "w") as f:
    f.write("window.ATLAS_INDEX = " + _json_for_script(index) + ";\n")
  with open(os.path.join(atlas_dir, "index.json"), "w") as f:
    json.dump(index, f)
  for data in pages:
    with open(os.path.join(atlas_dir, "n", page_name(data["id"])), "w", encoding="utf-8") as f:
      f.write(neuron_page(data))
  path = os.path.join(atlas_dir, "index.html")
  with open(path, "w", encoding="utf-8") as f:
    f.write(index_page(index))
  return path


def read_page_data(path: str) -> dict:
  """The JSON data embedded in a neuron page."""
  with open(path, encoding="utf-8") as f:
    text = f.read()
  m = re.search(r'<script type="application/json" id="neuron-data">(.*?)</script>', text, re.S)
  if m is None:
    raise ValueError(f"{path}: no neuron-data script (not an atlas neuron page)")
  return json.loads(m.group(1).replace("<\\/", "</"))
