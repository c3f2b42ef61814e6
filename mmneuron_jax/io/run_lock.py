"""An exclusive lock on a run directory: one run at a time, released on exit and on crash.

Local directory: `fcntl.flock` on `<workdir>/.lock`; the kernel drops the lock when the process
dies, so a crashed run never leaves a stale lock. The holder writes its pid and host into the file so
that a second run can refuse at once naming them.

URL directory (`gs://...`, `file://...`, `memory://...`): a lock object `<workdir>/.lock` created
with a conditional write (only if absent) through tensorstore's kvstore (io/kvstore.py), holding
{"pid", "host", "time"}; the holder rewrites "time" every HEARTBEAT_S seconds and deletes the object
on exit. A lock left by a killed run is taken over when it is provably stale: its host is this host
and its pid is gone, or its heartbeat is older than STALE_S. Otherwise the run refuses naming the
holder (and the object to delete if that run is known to be dead).
"""
import contextlib
import fcntl
import json
import os
import socket
import threading
import time

from absl import logging

from mmneuron_jax.errors import UserError
from mmneuron_jax.io import kvstore, paths

LOCK = ".lock"
HEARTBEAT_S = 60.0
STALE_S = 600.0


@contextlib.contextmanager
def locked(workdir: str):
  """Hold the lock of workdir for the block; UserError naming the holder when another run has it."""
  if paths.is_url(workdir):
    with _url_locked(workdir) as path:
      yield path
    return
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 256, 0).decode(errors="replace").strip() or "unknown process"
      raise UserError(f"{workdir}: another run is using this run directory ({holder}); wait for it to "
                      "finish or use another --workdir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
    try:
      yield path
    finally:
      os.ftruncate(fd, 0)
      fcntl.flock(fd, fcntl.LOCK_UN)
  finally:
    os.close(fd)


def _me() -> dict:
  return {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}


def holder_text(info: dict) -> str:
  return f"pid {info.get('pid')} on host {info.get('host')}"


def stale_reason(info: dict, now: float, host: str) -> str | None:
  """Why a lock object's holder is certainly gone, or None when it may still be running."""
  if info.get("host") == host:
    try:
      os.kill(int(info.get("pid")), 0)
    except ProcessLookupError:
      return "its process is gone"
    except (PermissionError, TypeError, ValueError):
      pass
    return None
  age = now - float(info.get("time", 0))
  return f"no heartbeat for {age:.0f} s" if age > STALE_S else None


def _acquire(kv, workdir: str) -> bytes:
  """Create (or take over a stale) lock object; its generation. UserError when another run holds it."""
  url = paths.join(workdir, LOCK)
  for _ in range(3):  # a lost race re-reads the object once more
    data, generation = kvstore.read(kv, LOCK)
    if data is not None:
      try:
        info = json.loads(data)
      except ValueError:
        info = {}
      why = stale_reason(info, time.time(), socket.gethostname())
      if why is None:
        raise UserError(f"{workdir}: another run is using this run directory ({holder_text(info)}); wait for "
                        f"it to finish or use another --workdir (if that run is dead, delete {url})")
      logging.warning("%s: taking over the lock of %s (%s)", workdir, holder_text(info), why)
    mine = kvstore.write(kv, LOCK, json.dumps(_me()).encode(), if_equal=generation)
    if mine:
      return mine
  raise UserError(f"{workdir}: another run took the lock {url} at the same moment; use another --workdir "
                  "or retry when it has finished")


@contextlib.contextmanager
def _url_locked(workdir: str):
  kv = kvstore.open_dir(workdir)
  held = {"generation": _acquire(kv, workdir)}
  stop = threading.Event()

  def heartbeat():
    while not stop.wait(HEARTBEAT_S):
      new = kvstore.write(kv, LOCK, json.dumps(_me()).encode(), if_equal=held["generation"])
      if not new:
        logging.error("%s: the run lock %s was taken by another run", workdir, paths.join(workdir, LOCK))
        return
      held["generation"] = new

  beat = threading.Thread(target=heartbeat, name="run-lock-heartbeat", daemon=True)
  beat.start()
  try:
    yield paths.join(workdir, LOCK)
  finally:
    stop.set()
    beat.join()
    kvstore.write(kv, LOCK, None, if_equal=held["generation"])
