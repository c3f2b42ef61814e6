"""A URL workdir's keys through tensorstore's own kvstore drivers (`gs://`, `s3://`, `file://`,
`memory://`, ...): the statistics store and the run lock of a URL run directory.

One tensorstore Context for the process, so that every open of a `memory://` URL sees the same
in-memory store (a fresh context would start an empty one).

    kv = kvstore.open_dir("gs://bucket/run/stats")     # keys relative to that prefix
    kvstore.read(kv, "state.json")  -> bytes | None
"""
import os
import shutil

import tensorstore as ts

CONTEXT = ts.Context()


def dir_url(url: str) -> str:
  return str(url).rstrip("/") + "/"


def open_dir(url: str):
  """A KvStore whose keys are relative to the directory-like prefix `url`."""
  return ts.KvStore.open(dir_url(url), context=CONTEXT).result()


def zarr_spec(url: str) -> dict:
  """tensorstore spec of a zarr array at the URL prefix `url`."""
  return {"driver": "zarr", "kvstore": dir_url(url)}


def read(kv, key: str):
  """(value bytes, generation) of key, or (None, generation of 'missing')."""
  r = kv.read(key).result()
  return (r.value if r.state == "value" else None), r.stamp.generation


def write(kv, key: str, value: bytes | None, if_equal: bytes | None = None) -> bytes:
  """Write (None: delete) key; with if_equal, only when its generation still is if_equal.
  Returns the new generation, b'' when the condition failed."""
  return kv.write(key, value, if_equal=if_equal).result().generation


def keys(kv) -> list:
  """Every key under the store's prefix, sorted (str)."""
  return sorted(k.decode() if isinstance(k, bytes) else k for k in kv.list().result())


def children(kv) -> list:
  """First path components of the keys (the 'directory listing'), sorted and unique."""
  return sorted({k.split("/", 1)[0] for k in keys(kv)})


def delete_all(kv) -> None:
  """Delete every key under the store's prefix (a local `file://` one: its emptied directories too)."""
  kv.delete_range(ts.KvStore.KeyRange()).result()
  spec = kv.spec().to_json()
  if spec.get("driver") == "file" and os.path.isdir(spec.get("path", "")):
    shutil.rmtree(spec["path"], ignore_errors=True)
