"""One neuron of a run's atlas as self-contained HTML (styles inlined, images as data URIs), for a
notebook cell: `show(run_dir, "vision.L1.N27")`."""
import base64
import os
import re

from mmneuron_jax.tasks.atlas import assets, site


def _atlas_dir(path: str) -> str:
  return path if os.path.exists(os.path.join(path, "index.json")) else os.path.join(path, "atlas")


def neuron_html(run_or_atlas_dir: str, neuron_id: str) -> str:
  """-> the neuron's page body, self-contained (no relative links left to resolve)."""
  atlas_dir = _atlas_dir(run_or_atlas_dir)
  page = os.path.join(atlas_dir, "n", site.page_name(neuron_id))
  if not os.path.exists(page):
    raise KeyError(f"{neuron_id!r}: no page {page} (ids read '<module>.L<layer>.N<index>'; see {atlas_dir}/index.json)")
  data = site.read_page_data(page)
  body = site.neuron_page(data)
  body = body[body.index("<h1>"):body.index('<script type="application/json"')]

  def inline(m):
    path = os.path.normpath(os.path.join(atlas_dir, "n", m.group(1)))
    with open(path, "rb") as f:
      return 'src="data:image/png;base64,' + base64.b64encode(f.read()).decode() + '"'
  body = re.sub(r'src="(\.\./img/[^"]+)"', inline, body)
  return f'<div class="mmneuron-atlas"><style>{assets.CSS}</style>{body}</div>'


def show(run_or_atlas_dir: str, neuron_id: str):
  """IPython display object of `neuron_html` (the HTML string when IPython is not installed)."""
  text = neuron_html(run_or_atlas_dir, neuron_id)
  try:
    from IPython.display import HTML
  except ImportError:
    return text
  return HTML(text)
