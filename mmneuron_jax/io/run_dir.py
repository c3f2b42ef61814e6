"""A run directory's config files: every attempt's config, and the config of the accepted run.

  configs/<UTC time>.json   the config of each attempt (kept, refused and crashed ones too)
  config.json               the config of the run whose results the directory holds; written only
                            once the run is accepted (config valid, data checked, statistics either
                            fresh or resumable), so a refused run never rewrites it

workdir is a local path or a URL (io/paths.py).
"""
import datetime
import json
import os
import posixpath

from mmneuron_jax.io import kvstore, paths
from mmneuron_jax.io.stats_store import STATE, write_json_atomic

ATTEMPTS = "configs"


def _as_dict(config):
  return json.loads(config.to_json_best_effort()) if hasattr(config, "to_json_best_effort") else dict(config)


def record_attempt(config, workdir: str) -> str:
  """Write configs/<timestamp>.json for this attempt; returns its path."""
  folder = paths.join(workdir, ATTEMPTS)
  paths.makedirs(folder)
  stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
  path = paths.join(folder, f"{stamp}.json")
  write_json_atomic(path, _as_dict(config))
  return path


def accept(config, workdir: str) -> None:
  """The run is accepted: config.json now describes what the directory holds."""
  paths.makedirs(workdir)
  write_json_atomic(paths.join(workdir, "config.json"), _as_dict(config))


def progress_lines(workdir: str) -> list:
  """'stats/<name>: cursor N' for every statistics store under workdir/stats (for an interrupted run)."""
  if paths.is_url(workdir):
    return _url_progress_lines(workdir)
  out, root = [], os.path.join(workdir or "", "stats")
  for dirpath, dirs, files in sorted(os.walk(root)) if os.path.isdir(root) else []:
    dirs.sort()
    if "state.json" in files:
      try:
        with open(os.path.join(dirpath, "state.json")) as f:
          cursor = json.load(f)["cursor"]
      except (OSError, ValueError, KeyError):
        continue
      out.append(f"{os.path.relpath(dirpath, workdir)} at batch {cursor}")
  return out


def _url_progress_lines(workdir: str) -> list:
  """progress_lines of a URL workdir: the stores' state objects, read through the kvstore driver."""
  out, kv = [], kvstore.open_dir(paths.join(workdir, "stats"))
  for key in kvstore.keys(kv):
    if key == STATE or key.endswith("/" + STATE):
      data, _ = kvstore.read(kv, key)
      try:
        cursor = json.loads(data)["cursor"]
      except (TypeError, ValueError, KeyError):
        continue
      out.append(f"{posixpath.join('stats', posixpath.dirname(key)).rstrip('/')} at batch {cursor}")
  return out
