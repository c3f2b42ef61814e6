"""The MINER authors' protocol around the maths (tasks/miner/protocol.py, configs, the Qwen2-VL
processor bounds), each checked against a plain-Python reproduction of what their code did."""
import json
import math
import os

import ml_collections
import numpy as np
import pytest

from mmneuron_jax.configs import miner_qwen2_audio_7b, miner_qwen2_vl_7b
from mmneuron_jax.models.sampling import Sampling
from mmneuron_jax.tasks.miner import protocol as miner_protocol

# Qwen2-VL-7B-Instruct's generation_config.json (the fields generate reads).
QWEN2_VL_GENERATION = {"bos_token_id": 151643, "pad_token_id": 151643, "do_sample": True,
                       "eos_token_id": [151645, 151643], "repetition_penalty": 1.05, "temperature": 0.1,
                       "top_k": 1, "top_p": 0.001}


def test_presets_are_the_authors_protocol():
  vl, audio = miner_qwen2_vl_7b.get_config(), miner_qwen2_audio_7b.get_config()
  for c in (vl, audio):
    assert c.data.n_per_dataset == 0 and c.deactivate.n_per_dataset == 0      # full sets (config.yaml:39-46)
    assert c.deactivate.generation == "checkpoint" and c.deactivate.max_new_tokens == 128
    assert c.select.video is False and c.select.seed == 2024
  assert (vl.data.min_pixels, vl.data.max_pixels) == (256 * 28 * 28, 1280 * 28 * 28)   # models/qwen2_vl.py:34-36
  assert vl.data.video_frames == "authors"
  assert vl.model.dtype == "auto" and audio.model.dtype == "float32"
  assert miner_qwen2_vl_7b.get_config("data.n_per_dataset=1000").data.n_per_dataset == 1000  # subsets: an option


def test_dtype_auto_reads_the_checkpoint(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps({"torch_dtype": "bfloat16"}))
  assert miner_protocol.resolve_dtype("auto", str(tmp_path)) == "bfloat16"
  assert miner_protocol.resolve_dtype("float32", str(tmp_path)) == "float32"
  (tmp_path / "config.json").write_text(json.dumps({}))
  with pytest.raises(ValueError, match="torch_dtype"):
    miner_protocol.resolve_dtype("auto", str(tmp_path))


def test_generation_from_the_checkpoint_file(tmp_path):
  c = ml_collections.ConfigDict({"deactivate": {"generation": "checkpoint", "temperature": 0.0, "top_k": 0,
                                                "top_p": 1.0, "repetition_penalty": 1.0}})
  with pytest.raises(ValueError, match="generation_config.json"):
    miner_protocol.generation(c, str(tmp_path))
  (tmp_path / "generation_config.json").write_text(json.dumps(QWEN2_VL_GENERATION))
  got, source = miner_protocol.generation(c, str(tmp_path))
  assert source == "generation_config.json"
  assert got == Sampling(do_sample=True, temperature=0.1, top_k=1, top_p=0.001, repetition_penalty=1.05)
  c.deactivate.generation = "config"
  c.deactivate.repetition_penalty = 1.2
  assert miner_protocol.generation(c, str(tmp_path)) == (Sampling(repetition_penalty=1.2), "config")


def test_default_aggregate_leaves_the_video_dataset_out():
  """The authors' default sum_ISM file is text_vqa5000_coco_caption5000_mmlu14042: MSVD scored, not aggregated."""
  stored = ("text", "special", "image", "video")
  p = lambda *m: {"present": np.array([x in m for x in stored])}
  totals = {"text_vqa": p("text", "special", "image"), "coco_caption": p("text", "special", "image"),
            "mmlu": p("text", "special"), "msvd_qa": p("text", "special", "video")}
  assert miner_protocol.aggregation_datasets(totals, stored, False) == (["text_vqa", "coco_caption", "mmlu"],
                                                                        ["msvd_qa"])
  assert miner_protocol.aggregation_datasets(totals, stored, True) == (list(totals), [])
  # M = 3 modalities -> floor(K / M) per modality on Qwen2-VL: 3536
  assert int(0.02 * 28 * 18944) // 3 == 3536
  with pytest.raises(ValueError, match="select.video"):
    miner_protocol.aggregation_datasets({"msvd_qa": totals["msvd_qa"]}, stored, False)


def test_headline_is_the_mean_over_benchmarks():
  rows = [{"dataset": d, "condition": c, "primary": v} for d, c, v in
          [("a", "none", 0.6), ("b", "none", 0.5), ("a", "all", 0.2), ("b", "all", 0.3)]]
  head = {h["condition"]: h for h in miner_protocol.headline(rows)}
  assert math.isclose(head["none"]["mean"], 0.55) and math.isclose(head["all"]["mean"], 0.25)
  assert math.isclose(head["all"]["vs_none"], -0.30) and head["all"]["a"] == 0.2 and head["none"]["n_benchmarks"] == 2


def ref_smart_resize(height, width, factor, min_pixels, max_pixels):
  """Qwen2-VL's smart_resize (qwen_vl_utils and transformers 4.45 image_processing_qwen2_vl), plainly."""
  h, w = round(height / factor) * factor, round(width / factor) * factor
  if h * w > max_pixels:
    beta = math.sqrt(height * width / max_pixels)
    h, w = math.floor(height / beta / factor) * factor, math.floor(width / beta / factor) * factor
  elif h * w < min_pixels:
    beta = math.sqrt(min_pixels / (height * width))
    h, w = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
  return h, w


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  from mmneuron_jax.data.synthetic import demo_qwen2_vl as demo_model_qwen2_vl
  path = str(tmp_path_factory.mktemp("qwen2_vl_demo"))
  demo_model_qwen2_vl.build_demo_checkpoint(path, ["a question"], seed=0)
  return path


def test_authors_processor_bounds_for_images_and_video_frames(checkpoint):
  """The authors: AutoProcessor.from_pretrained(min_pixels=256*28*28, max_pixels=1280*28*28); their
  MSVD frames were sized by qwen_vl_utils (min 128*28*28, max 360*420), and transformers 4.45-4.47
  then resized every frame again with the image processor's bounds (no separate video processor)."""
  from PIL import Image

  from mmneuron_jax.data.inputs.qwen2_vl import Qwen2VLInputs, resize_frames
  authors = dict(min_pixels=256 * 28 * 28, max_pixels=1280 * 28 * 28)
  inputs = Qwen2VLInputs.from_pretrained(checkpoint, video_frames="authors", **authors)
  assert inputs.settings() == {**authors, "video_min_pixels": authors["min_pixels"],
                               "video_max_pixels": authors["max_pixels"], "video_frames": "authors"}
  image = Image.fromarray(np.zeros((120, 90, 3), np.uint8))
  grid = inputs(["<image>"], [[image]])["image_grid_thw"][0]
  h, w = ref_smart_resize(120, 90, 28, **authors)
  assert grid.tolist() == [1, h // 14, w // 14]
  frames = np.random.default_rng(0).integers(0, 256, (2, 240, 320, 3), dtype=np.uint8)   # an MSVD-sized clip
  utils = resize_frames(frames, 128 * 28 * 28, 360 * 420)                                # qwen_vl_utils
  h1, w1 = ref_smart_resize(240, 320, 28, 128 * 28 * 28, 360 * 420)
  assert utils.shape[1:3] == (h1, w1) == (280, 392)
  grid = inputs(["<video>"], [[]], videos=[[utils]])["video_grid_thw"][0]
  h2, w2 = ref_smart_resize(h1, w1, 28, **authors)                                       # the processor again
  assert (h2, w2) == (392, 532) and grid.tolist() == [1, h2 // 14, w2 // 14]
  once = Qwen2VLInputs.from_pretrained(checkpoint, video_frames="once", video_min_pixels=28 * 28, **authors)
  assert once(["<video>"], [[]], videos=[[utils]])["video_grid_thw"][0].tolist() == [1, h1 // 14, w1 // 14]
  default = Qwen2VLInputs.from_pretrained(checkpoint)                                    # 0: the checkpoint's own
  size = json.load(open(os.path.join(checkpoint, "preprocessor_config.json")))["size"]
  assert (default.settings()["min_pixels"], default.settings()["max_pixels"]) == (size["shortest_edge"],
                                                                                  size["longest_edge"])


def test_generation_config_eos_ids_stop_generation(checkpoint, tmp_path):
  """HF generate stops on generation_config.json's eos ids too (Qwen2-VL's adds <|endoftext|>)."""
  import shutil

  from mmneuron_jax.tasks.miner import inputs as miner_inputs
  base = miner_inputs.family_inputs("qwen2_vl", checkpoint)
  path = str(tmp_path / "ckpt")
  shutil.copytree(checkpoint, path)
  extra = max(base.eos_ids()) + 1
  (tmp_path / "ckpt" / "generation_config.json").write_text(json.dumps({"eos_token_id": [base.eos_ids()[0], extra]}))
  assert miner_inputs.family_inputs("qwen2_vl", path).eos_ids() == sorted(set(base.eos_ids()) | {extra})
