"""Checkpoint locations as users write them: a local directory, or a hub id (`org/name`, optionally
`org/name@revision`) resolved through `huggingface_hub`'s cache (HF_HOME / HF_HUB_CACHE).

Local first: a model already in the cache is used without touching the network; with
HF_HUB_OFFLINE=1 nothing is ever downloaded and a model missing from the cache is a clear error.
"""
import os
import re

# What the loaders read: config + weights + processor / tokenizer / generation files.
CHECKPOINT_FILES = ("*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.jinja")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")


def is_hub_id(path: str) -> bool:
  """`org/name[@rev]` that is not an existing local path."""
  return bool(_HUB_ID.match(path)) and not os.path.exists(path) and not path.startswith(".")


def offline() -> bool:
  return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve_checkpoint(path: str) -> str:
  """A local checkpoint directory for `path` (a directory, or a hub id found in / fetched into the cache)."""
  if os.path.isdir(path) or "://" in path:  # URLs (gs://...) are the storage layer's to read
    return path
  if not is_hub_id(path):
    raise FileNotFoundError(f"checkpoint {path!r}: no such directory (a HF checkpoint directory holds config.json + "
                            "*.safetensors; a hub id reads 'org/name')")
  import huggingface_hub
  from huggingface_hub import constants
  from huggingface_hub.errors import LocalEntryNotFoundError
  repo_id, _, revision = path.partition("@")
  kwargs = dict(repo_id=repo_id, revision=revision or None, allow_patterns=list(CHECKPOINT_FILES))
  try:
    return huggingface_hub.snapshot_download(local_files_only=True, **kwargs)
  except LocalEntryNotFoundError:
    if offline():
      raise FileNotFoundError(
          f"checkpoint {path!r}: not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and "
          f"HF_HUB_OFFLINE=1 forbids downloading it; fetch it first (`hf download {repo_id}`), point "
          f"HF_HOME / HF_HUB_CACHE at the cache that holds it, or pass its directory") from None
  return huggingface_hub.snapshot_download(**kwargs)
