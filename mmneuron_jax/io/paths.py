"""One path abstraction for a run directory: a local path, or a URL (`gs://bucket/run`, `s3://...`,
`file:///abs/dir`, `memory://name`).

Every file a run writes or reads in its workdir (config.json, configs/, report.md, plots, JSON
results, neuron sets) goes through these functions. A plain local path keeps the builtin / `os`
calls (same bytes, same fsync'd atomic replaces); a URL goes through fsspec (`gs://` needs `gcsfs`,
`s3://` needs `s3fs`; `file://` and `memory://` need nothing). The statistics store does not use
this module for its arrays: it speaks to the same URLs through tensorstore's kvstore drivers
(io/kvstore.py).

    paths.makedirs(paths.join(workdir, "plots"))
    with paths.open(paths.join(workdir, "report.md"), "w") as f: ...
"""
import builtins
import hashlib
import io
import json
import os
import posixpath

import fsspec

from mmneuron_jax.errors import UserError

_LOCAL_PROTOCOLS = ("file", "local")
_DIRECTORY_PROTOCOLS = _LOCAL_PROTOCOLS + ("memory",)  # the others (gs, s3, ...): prefixes, no directories


def is_url(path) -> bool:
  """True for `scheme://...` (gs://, s3://, file://, memory://, ...)."""
  return "://" in str(path)


def _fs(path: str):
  return fsspec.core.url_to_fs(path)


def _protocol(fs) -> str:
  return fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]


def _makedirs(fs, p: str) -> None:
  """mkdir -p where the filesystem has directories; nothing on an object store (there gcsfs would
  create a missing bucket)."""
  if _protocol(fs) in _DIRECTORY_PROTOCOLS:
    fs.makedirs(p, exist_ok=True)


def check_url(url) -> None:
  """UserError when no filesystem serves url (e.g. gs:// without gcsfs installed)."""
  try:
    _fs(url)
  except (ImportError, ValueError) as e:
    raise UserError(f"--workdir={url}: no filesystem for this URL ({str(e).splitlines()[0]}); for gs:// "
                    "`pip install gcsfs`, for s3:// `pip install s3fs`") from None


def join(path, *parts) -> str:
  if is_url(path):
    return posixpath.join(str(path), *parts)
  return os.path.join(path, *parts)


def exists(path) -> bool:
  if is_url(path):
    fs, p = _fs(path)
    return fs.exists(p)
  return os.path.exists(path)


def isdir(path) -> bool:
  if is_url(path):
    fs, p = _fs(path)
    return fs.isdir(p)
  return os.path.isdir(path)


def makedirs(path) -> None:
  """mkdir -p (a no-op on object stores, where directories are key prefixes)."""
  if is_url(path):
    _makedirs(*_fs(path))
  else:
    os.makedirs(path, exist_ok=True)


def open(path, mode: str = "r", **kwargs):  # pylint: disable=redefined-builtin
  """A file object for path ('r', 'w', 'rb', 'wb', 'a'; kwargs: encoding, newline); use as a
  context manager."""
  if is_url(path):
    if "w" in mode or "a" in mode:
      makedirs(dirname(path))
    return fsspec.open(str(path), mode, **kwargs).open()
  return builtins.open(path, mode, **kwargs)


def listdir(path) -> list:
  """Names (not paths) of the entries of a directory, sorted."""
  if is_url(path):
    fs, p = _fs(path)
    return sorted(posixpath.basename(e.rstrip("/")) for e in fs.ls(p, detail=False))
  return sorted(os.listdir(path))


def remove(path) -> None:
  if is_url(path):
    fs, p = _fs(path)
    fs.rm(p)
  else:
    os.remove(path)


def dirname(path) -> str:
  return posixpath.dirname(str(path).rstrip("/")) if is_url(path) else os.path.dirname(path)


def write_bytes(path, data: bytes) -> None:
  """Write a whole file; on a URL the object appears complete or not at all (a local `file://` URL:
  temp file + rename)."""
  fs, p = _fs(path)
  _makedirs(fs, posixpath.dirname(p))
  if _protocol(fs) in _LOCAL_PROTOCOLS:
    tmp = f"{p}.tmp.{os.getpid()}"
    fs.pipe_file(tmp, data)
    os.replace(tmp, p)
  else:
    fs.pipe_file(p, data)


def write_json(path, obj, **dump_kwargs) -> None:
  """json.dump(obj, file, **dump_kwargs) into path."""
  if is_url(path):
    write_bytes(path, json.dumps(obj, **dump_kwargs).encode())
  else:
    with builtins.open(path, "w") as f:
      json.dump(obj, f, **dump_kwargs)


def read_json(path):
  with open(path) as f:
    return json.load(f)


def savefig(fig, path, **kwargs) -> None:
  """fig.savefig into path (a URL: rendered in memory, then written as one object)."""
  if is_url(path):
    buf = io.BytesIO()
    fig.savefig(buf, **{"format": "png", **kwargs})
    write_bytes(path, buf.getvalue())
  else:
    fig.savefig(path, **kwargs)


def local_scratch(path, name: str) -> str:
  """A local directory standing for `<path>/<name>` where a file must be local (a checkpoint that
  the model loader memory-maps): the path itself for a local workdir; for a URL, a directory under
  $MMNEURON_CACHE (default ~/.cache/mmneuron_jax) keyed by the URL, so reruns reuse it."""
  if not is_url(path):
    return os.path.join(path, name)
  root = os.environ.get("MMNEURON_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "mmneuron_jax")
  key = hashlib.sha256(str(path).rstrip("/").encode()).hexdigest()[:16]
  return os.path.join(root, "url_workdirs", key, name)
