"""The atlas site's stylesheet and index script (kept in Python so the package carries them)."""

CSS = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.2em 2em; color: #222; background: #fff; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.4em; } h3 { font-size: 1em; margin: .8em 0 .3em; }
table { border-collapse: collapse; } td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
nav { margin-bottom: .6em; } a { color: #1659b8; }
.hists { display: flex; flex-wrap: wrap; gap: 10px; } .hist { background: #fafafa; border: 1px solid #eee; }
.example { display: inline-block; vertical-align: top; margin: 4px 10px 10px 0; max-width: 520px; }
.example .meta { font-size: 12px; color: #555; }
.tiles { display: flex; flex-wrap: wrap; gap: 3px; }
.tile { position: relative; display: inline-block; width: 96px; height: 96px; background: #eee; }
.tile img { position: absolute; left: 0; top: 0; width: 96px; height: 96px; image-rendering: pixelated; }
.tile .photo { filter: grayscale(1); opacity: .55; }
.strip { width: 480px; height: 14px; image-rendering: pixelated; border: 1px solid #ddd; background: #f7f7f7; }
.text { font-family: ui-monospace, monospace; font-size: 12px; margin-top: 3px; }
.tok { border-radius: 2px; padding: 0 1px; white-space: pre; } .img-token { color: #888; }
.lens code { background: #eef3fb; padding: 1px 4px; margin-right: 4px; border-radius: 3px; }
.search input { width: 320px; padding: 4px; } #results { margin: 4px 0; padding-left: 1.2em; }
.filters select, .filters button { margin-right: 6px; }
.neurons td { text-align: left; }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 3px; }
.bar { display: inline-block; height: 10px; vertical-align: middle; margin-right: 1px; }
"""

JS = r"""
(function () {
  var A = window.ATLAS_INDEX, PAGE = 100, page = 0;
  var COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  function el(id) { return document.getElementById(id); }
  function href(n) { return "n/" + n.id.replace(/[^A-Za-z0-9_-]/g, "_") + ".html"; }
  function options(sel, label, values) {
    sel.innerHTML = "";
    var o = document.createElement("option"); o.value = ""; o.textContent = "all " + label; sel.appendChild(o);
    values.forEach(function (v) { var o = document.createElement("option"); o.value = v; o.textContent = label + " " + v; sel.appendChild(o); });
  }
  var modules = Object.keys(A.counts);
  options(el("f-module"), "module", modules);
  var layers = {}; A.neurons.forEach(function (n) { layers[n.layer] = 1; });
  options(el("f-layer"), "layer", Object.keys(layers).map(Number).sort(function (a, b) { return a - b; }));
  options(el("f-group"), "group", A.group_names);
  function filtered() {
    var m = el("f-module").value, l = el("f-layer").value, g = el("f-group").value;
    return A.neurons.filter(function (n) {
      return (!m || n.module === m) && (l === "" || n.layer === Number(l)) && (!g || n.member.indexOf(A.group_names.indexOf(g)) >= 0);
    });
  }
  function render() {
    var rows = filtered(), pages = Math.max(1, Math.ceil(rows.length / PAGE));
    page = Math.min(page, pages - 1);
    var body = document.querySelector("#neurons tbody"); body.innerHTML = "";
    rows.slice(page * PAGE, (page + 1) * PAGE).forEach(function (n) {
      var tr = document.createElement("tr");
      var top = Math.max.apply(null, n.max.concat([1e-12]));
      var bars = n.max.map(function (v, g) {
        return '<span class="bar" title="' + A.group_names[g] + ': ' + v + '" style="width:' + Math.round(40 * Math.max(v, 0) / top) +
               'px;background:' + COLORS[g % COLORS.length] + '"></span>';
      }).join("");
      tr.innerHTML = '<td><a href="' + href(n) + '">' + n.id + '</a></td><td>' +
        n.member.map(function (g) { return A.group_names[g]; }).join(", ") + '</td><td style="text-align:left">' + bars +
        '</td><td>' + (n.effect === null ? "" : n.effect.toPrecision(3)) + '</td>';
      body.appendChild(tr);
    });
    el("page-info").textContent = rows.length + " neurons, page " + (page + 1) + " / " + pages;
  }
  ["f-module", "f-layer", "f-group"].forEach(function (id) { el(id).addEventListener("change", function () { page = 0; render(); }); });
  el("prev-page").addEventListener("click", function () { page = Math.max(0, page - 1); render(); });
  el("next-page").addEventListener("click", function () { page += 1; render(); });
  var byId = {}; A.neurons.forEach(function (n) { byId[n.id.toLowerCase()] = n; });
  function search() {
    var q = el("search").value.trim().toLowerCase(), out = el("results"); out.innerHTML = "";
    if (!q) return;
    var hits = A.neurons.filter(function (n) { return n.id.toLowerCase().indexOf(q) >= 0; }).slice(0, 20);
    hits.forEach(function (n) {
      var li = document.createElement("li"); li.innerHTML = '<a href="' + href(n) + '">' + n.id + '</a>'; out.appendChild(li);
    });
    if (!hits.length) { var li = document.createElement("li"); li.textContent = "no neuron matches"; out.appendChild(li); }
  }
  el("search").addEventListener("input", search);
  el("search").addEventListener("keydown", function (e) {
    var n = byId[el("search").value.trim().toLowerCase()];
    if (e.key === "Enter" && n) { window.location.href = href(n); }
  });
  render();
})();
"""
