"""An exclusive lock on a run directory: one run at a time, released on exit and on crash.

`fcntl.flock` on `<workdir>/.lock`; the kernel drops the lock when the process dies, so a crashed
run never leaves a stale lock. The holder writes its pid and host into the file so that a second
run can refuse at once naming them.
"""
import contextlib
import fcntl
import os
import socket

from mmneuron_jax.errors import UserError

LOCK = ".lock"


@contextlib.contextmanager
def locked(workdir: str):
  """Hold the lock of workdir for the block; UserError naming the holder when another run has it."""
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
