"""Sample-count snapshots of a dataset's stage-2 sums (the authors' ISM_<n>.npy, saved when the
running sample count reaches one of config.scores.snapshots), for the sample-count sweep.

Stage 2 plans its batches so that no batch straddles a snapshot count (`tasks/miner/scores.plan`),
so the totals after the batch ending there are the sums over exactly the first n samples.
`writer` is passed to `accumulate` as its `stop` rule (it never stops): after each batch it writes
`<workdir>/stats_snapshots/<dataset>/n_<count>.npz` when the totals' sample count is a snapshot
count, atomically (io/paths.write_bytes: a local temp file + os.replace, or one whole object on a
URL workdir) and BEFORE the store commits that batch, so a committed
cursor past n implies the snapshot exists; a resumed run that re-counts the batch rewrites the same
values. Each file records the dataset store's fingerprint; `load` refuses a file from another run.
"""
import io
import os

import numpy as np

from mmneuron_jax.io import paths

FINGERPRINT = "__fingerprint__"


def folder(workdir: str, dataset: str) -> str:
  return paths.join(workdir, "stats_snapshots", dataset)


def path(workdir: str, dataset: str, count: int) -> str:
  return paths.join(folder(workdir, dataset), f"n_{int(count):08d}.npz")


def save(file: str, totals: dict, fingerprint: str) -> None:
  arrays = {**{k: np.asarray(v) for k, v in totals.items()}, FINGERPRINT: np.asarray(fingerprint)}
  if paths.is_url(file):  # one whole object (io/paths.py)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    paths.write_bytes(file, buf.getvalue())
    return
  os.makedirs(os.path.dirname(file), exist_ok=True)
  tmp = f"{file}.tmp.{os.getpid()}.npz"
  np.savez(tmp, **arrays)
  with open(tmp, "rb") as f:
    os.fsync(f.fileno())
  os.replace(tmp, file)


def writer(workdir: str, dataset: str, counts, fingerprint: str):
  """-> stop(totals) -> False that saves the totals at every count in `counts` (see module doc)."""
  counts = {int(c) for c in counts}

  def stop(totals) -> bool:
    n = int(np.asarray(totals["samples"]).reshape(-1)[0])
    if n in counts:
      save(path(workdir, dataset, n), totals, fingerprint)
    return False

  return stop


def load(workdir: str, dataset: str, counts, fingerprint: str) -> dict:
  """{count: totals} of the snapshots that exist for `counts`; a file with another fingerprint or
  another sample count raises (never a silently wrong sweep)."""
  out = {}
  for c in counts:
    file = path(workdir, dataset, c)
    if not paths.exists(file):
      continue
    with paths.open(file, "rb") as f, np.load(io.BytesIO(f.read())) as z:
      got = str(z[FINGERPRINT]) if FINGERPRINT in z.files else None
      if got != fingerprint:
        raise ValueError(f"{file}: fingerprint {got!r} is not this run's {fingerprint!r} (written by another "
                         "config/data); delete the stats_snapshots folder")
      totals = {k: z[k] for k in z.files if k != FINGERPRINT}
    n = int(totals["samples"].reshape(-1)[0])
    if n != int(c):
      raise ValueError(f"{file}: holds {n} samples, not {c}")
    out[int(c)] = totals
  return out
