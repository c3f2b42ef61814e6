"""`load_hf("org/name")` reads the local Hugging Face cache (a fake one laid out like the hub's:
models--org--name/{refs/main, snapshots/<commit>/}); with HF_HUB_OFFLINE=1 a model missing from the
cache is a clear error. Nothing downloads."""
import os
import shutil

import jax
import numpy as np
import pytest
from huggingface_hub import constants

import hf_tiny
import mmneuron_jax
from mmneuron_jax.io import hub

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture()
def fake_cache(tmp_path, monkeypatch):
  """A hub cache holding `tiny-org/tiny-llava` (the files a snapshot download leaves) + the checkpoint dir."""
  source = str(tmp_path / "source")
  hf_tiny.build_llava_next(source)
  cache = tmp_path / "hf_home" / "hub"
  repo = cache / "models--tiny-org--tiny-llava"
  (repo / "refs").mkdir(parents=True)
  (repo / "refs" / "main").write_text(COMMIT)
  shutil.copytree(source, repo / "snapshots" / COMMIT)
  monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
  monkeypatch.setenv("HF_HUB_CACHE", str(cache))
  monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))  # read at import by huggingface_hub
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  return source, str(repo / "snapshots" / COMMIT)


def test_hub_id_loads_from_the_cache_like_the_directory(fake_cache):
  source, snapshot = fake_cache
  assert hub.resolve_checkpoint("tiny-org/tiny-llava") == snapshot
  assert hub.resolve_checkpoint(f"tiny-org/tiny-llava@{COMMIT}") == snapshot
  by_id, by_dir = mmneuron_jax.load_hf("tiny-org/tiny-llava"), mmneuron_jax.load_hf(source)
  la, lb = jax.tree_util.tree_leaves_with_path(by_id.params), jax.tree_util.tree_leaves_with_path(by_dir.params)
  assert [p for p, _ in la] == [p for p, _ in lb]
  for (p, x), (_, y) in zip(la, lb):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(p))


def test_missing_model_offline_says_so(fake_cache):
  with pytest.raises(FileNotFoundError, match=r"not in the local Hugging Face cache.*HF_HUB_OFFLINE=1"):
    mmneuron_jax.load_hf("tiny-org/not-downloaded")


def test_local_paths_are_not_hub_ids(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  os.makedirs("runs/ckpt")
  assert hub.resolve_checkpoint("runs/ckpt") == "runs/ckpt"  # an existing relative dir wins over a hub id
  assert not hub.is_hub_id("./a/b") and not hub.is_hub_id("/abs/dir") and hub.is_hub_id("llava-hf/llava-1.5")
  with pytest.raises(FileNotFoundError, match="config.json"):
    hub.resolve_checkpoint(str(tmp_path / "nowhere"))
