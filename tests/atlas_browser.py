"""Headless Chromium (Debian's `chromium` + `chromium-driver`) driven by selenium, for the atlas
browser test and the README screenshot (`python tests/atlas_browser.py <atlas dir> <png>`)."""
import os
import shutil
import sys
import tempfile

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,1000")


def missing() -> str | None:
  """Why the browser cannot run here, or None."""
  for path in (CHROMIUM, CHROMEDRIVER):
    if not os.path.exists(path):
      return f"{path} is not installed (apt-get install -y chromium chromium-driver)"
  try:
    import selenium  # noqa: F401
  except ImportError:
    return "selenium is not installed (pip install selenium)"
  return None


class Browser:
  """A fresh headless Chromium profile per instance; close() removes it."""

  def __init__(self):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    self.profile = tempfile.mkdtemp(prefix="atlas-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + (f"--user-data-dir={self.profile}",):
      options.add_argument(flag)
    self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)

  def close(self):
    try:
      self.driver.quit()
    finally:
      shutil.rmtree(self.profile, ignore_errors=True)


def screenshot(atlas_dir: str, png: str, page: str | None = None) -> str:
  """Save a screenshot of a neuron page of the atlas (the first one, or `page`)."""
  b = Browser()
  try:
    if page is None:
      page = sorted(os.listdir(os.path.join(atlas_dir, "n")))[0]
    b.driver.get("file://" + os.path.abspath(os.path.join(atlas_dir, "n", page)))
    b.driver.save_screenshot(png)
  finally:
    b.close()
  return png


if __name__ == "__main__":
  print(screenshot(*sys.argv[1:]))
