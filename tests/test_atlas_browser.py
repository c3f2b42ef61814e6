"""The demo run's atlas in a real browser (headless Debian Chromium via selenium, from file://):
the index lists neurons, search finds one by id, a link opens its page, the heatmaps and the
(lazy) tiles load, and a screenshot is not blank. Without Chromium the test is skipped, except
in CI (env CI set), where it fails."""
import os
import time

import numpy as np
import pytest

import atlas_browser
from mmneuron_jax.configs import llava_next_demo
from mmneuron_jax import tasks


def require_browser():
  why = atlas_browser.missing()
  if why:
    if os.environ.get("CI"):
      pytest.fail(f"CI must run the browser test: {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def demo_atlas(tmp_path_factory):
  require_browser()
  c = llava_next_demo.get_config()
  c.stages = ("stats", "select", "atlas")
  c.data.n_per_domain = 6
  c.stats.max_samples_per_domain = 4
  c.atlas.k = 3
  c.atlas.effect_n_per_domain = 0  # effects: tests/test_atlas.py (planted ground truth)
  workdir = str(tmp_path_factory.mktemp("demo_run"))
  tasks.run(c, workdir)
  return os.path.join(workdir, "atlas")


def wait_for(fn, timeout=20.0):
  end = time.time() + timeout
  while time.time() < end:
    value = fn()
    if value:
      return value
    time.sleep(0.1)
  raise AssertionError(f"timed out waiting for {fn}")


def test_demo_atlas_in_chromium(demo_atlas, tmp_path):
  from PIL import Image
  from selenium.webdriver.common.by import By
  from selenium.webdriver.common.keys import Keys
  b = atlas_browser.Browser()
  d = b.driver
  try:
    d.get("file://" + os.path.join(demo_atlas, "index.html"))
    rows = wait_for(lambda: d.find_elements(By.CSS_SELECTOR, "#neurons tbody tr a"))
    index = d.execute_script("return window.ATLAS_INDEX;")
    assert len(rows) == min(100, index["total"]) and index["total"] > 0
    # search by id (client side): a unique id finds exactly itself; Enter opens its page
    target = index["neurons"][-1]["id"]
    box = d.find_element(By.ID, "search")
    box.send_keys(target)
    hits = wait_for(lambda: d.find_elements(By.CSS_SELECTOR, "#results li a"))
    assert target in [h.text for h in hits]
    box.send_keys(Keys.ENTER)
    wait_for(lambda: d.execute_script("return document.getElementById('neuron-data') !== null;"))
    assert d.execute_script("return JSON.parse(document.getElementById('neuron-data').textContent).id;") == target
    # back to the index, follow the first link to a neuron page
    d.get("file://" + os.path.join(demo_atlas, "index.html"))
    first = wait_for(lambda: d.find_elements(By.CSS_SELECTOR, "#neurons tbody tr a"))[0]
    name = first.text
    first.click()
    wait_for(lambda: "/n/" in d.current_url)
    data = d.execute_script("return JSON.parse(document.getElementById('neuron-data').textContent);")
    assert data["id"] == name
    heats = d.find_elements(By.CSS_SELECTOR, "img.heat")
    assert heats, "no heatmap on the neuron page"
    for img in heats[:20]:
      d.execute_script("arguments[0].scrollIntoView();", img)
      wait_for(lambda: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0;", img))
    photos = d.find_elements(By.CSS_SELECTOR, "img.photo")
    assert photos and all(p.get_attribute("loading") == "lazy" for p in photos)
    d.execute_script("arguments[0].scrollIntoView();", photos[0])
    wait_for(lambda: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0;", photos[0]))
    d.execute_script("window.scrollTo(0, 0);")
    shot = str(tmp_path / "neuron.png")
    assert d.save_screenshot(shot)
    pixels = np.asarray(Image.open(shot).convert("L"), np.float32)
    assert pixels.shape[0] > 100 and pixels.var() > 100.0, pixels.var()  # not a blank page
  finally:
    b.close()
