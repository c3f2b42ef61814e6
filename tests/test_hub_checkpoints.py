"""The hub checkpoints as published, at full width with the language model cut to 1 layer and
the other stacks (vision, Q-Former, audio) to 2: random weights saved in the hub's own layout (its
sparse config.json, its tensor names and dtype, sharded safetensors with the index, generation /
preprocessor configs) load through `load_hf` and match HF PyTorch fp32 (eager attention), which
loads the same files with its own `from_pretrained`, on one realistic input: a 672x672 image for
LLaVA-NeXT, 224x224 for InstructBLIP, 448x448 for Qwen2-VL and Qwen2.5-VL (16 attention windows),
2 s of audio for Qwen2-Audio, 384x384 for LLaVA-OneVision (base tile + a 1x1 grid, unpadded, with newlines: 1485 tokens;
the bilinear shrink of anyres-max needs > 9.9 tiles' worth and is covered by the tiny parity test).

Tolerances: logits and every probe module's neurons max-abs <= 1e-4 (as the tiny parity tests).
Heavy (vocab x width embeddings at full width, GBs): the weights are written shard by shard from a
pool of random values (no torch init), HF runs first and is freed before ours loads.
"""
import copy
import gc
import json
import os
import shutil
import struct
import time

import numpy as np
import pytest
import torch
import transformers

import hf_hooks
import mmneuron_jax
from mmneuron_jax.api import read_config
from mmneuron_jax.data.inputs import qwen2_audio as qwen2_audio_inputs, qwen2_vl as qwen2_vl_inputs
from mmneuron_jax.models import anyres
from mmneuron_jax.models.mllm import llava_onevision

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
TOL = 1e-4
SHARD_BYTES = 1 << 29  # small enough for >= 2 shards at every depth cut
# transformers-v5 in-memory names -> the names the hub's checkpoints hold (first matching prefix).
HUB_NAMES = {
    "llava_next": (("model.language_model.", "language_model.model."), ("lm_head.", "language_model.lm_head."),
                   ("model.vision_tower.", "vision_tower."), ("model.multi_modal_projector.", "multi_modal_projector."),
                   ("model.image_newline", "image_newline")),
    "instructblip": (("", ""),),
    "qwen2_vl": (("model.language_model.", "model."), ("model.visual.", "visual."), ("lm_head.", "lm_head.")),
    "qwen2_5_vl": (("model.language_model.", "model."), ("model.visual.", "visual."), ("lm_head.", "lm_head.")),
    "qwen2_audio": (("model.language_model.", "language_model.model."), ("lm_head.", "language_model.lm_head."),
                    ("model.audio_tower.", "audio_tower."), ("model.multi_modal_projector.", "multi_modal_projector.")),
    "llava_onevision": (("model.language_model.", "language_model.model."), ("lm_head.", "language_model.lm_head."),
                        ("model.vision_tower.", "vision_tower.vision_model."),
                        ("model.multi_modal_projector.", "multi_modal_projector."), ("model.image_newline", "image_newline")),
}
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def depth_cut(config: dict, llm: int = 1, towers: int = 2) -> dict:
  """The hub's sparse config with the language model cut to `llm` layers and every other stack
  (vision / Q-Former / audio) to `towers` (only those fields added)."""
  c = copy.deepcopy(config)
  kind = c["model_type"]
  if kind in ("qwen2_vl", "qwen2_5_vl"):
    c["num_hidden_layers"] = llm
    c["vision_config"]["depth"] = towers
  else:
    c["text_config"]["num_hidden_layers"] = llm
  if kind == "qwen2_5_vl":  # window-attention blocks, then one full-attention block
    c["vision_config"]["fullatt_block_indexes"] = [towers - 1]
  if kind in ("llava_next", "instructblip", "llava_onevision"):
    c["vision_config"]["num_hidden_layers"] = towers
  if kind == "instructblip":
    c["qformer_config"]["num_hidden_layers"] = towers
  if kind == "qwen2_audio":
    c["audio_config"]["encoder_layers"] = towers
  return c


def hub_name(kind: str, name: str) -> str:
  for ours, theirs in HUB_NAMES[kind]:
    if name.startswith(ours):
      return theirs + name[len(ours):]
  raise KeyError(f"{kind}: no hub name for {name!r}")


def hf_class(config: dict):
  return getattr(transformers, config["architectures"][0])  # the hub file names its HF class


def hub_tensors(config: dict) -> dict:
  """{hub tensor name: shape} of the HF model of `config`, built on the meta device (no memory)."""
  kind = config["model_type"]
  hf_cfg = transformers.AutoConfig.for_model(kind, **{k: v for k, v in config.items() if k != "model_type"})
  with torch.device("meta"):
    model = hf_class(config)(hf_cfg)
  return {hub_name(kind, k): tuple(v.shape) for k, v in model.state_dict().items()}


class Pools:
  """Random values for a whole checkpoint, fast: one pool of POOL (a prime) standard normals in the
  checkpoint's dtype, per tensor a window at a random offset (wrapping around), written straight to
  the file. Rows of a matrix are then distinct shifted windows (no row length divides POOL). Scales:
  norm weights 1 + 0.1 n, Q-Former query tokens n, everything else (weights, biases, embeddings) 0.02 n."""
  POOL = 4194301
  TAGS = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32"}

  def __init__(self, dtype, seed: int = 0):
    self.rng = np.random.default_rng(seed)
    n = torch.from_numpy(self.rng.standard_normal(self.POOL, np.float32))
    self.pools = {k: v.to(dtype).view(torch.uint8).numpy() for k, v in
                  (("norm", 1.0 + 0.1 * n), ("unit", n), ("weight", 0.02 * n))}
    self.tag, self.itemsize = self.TAGS[dtype], torch.empty((), dtype=dtype).element_size()

  @staticmethod
  def kind(name: str, shape: tuple) -> str:
    if name.endswith("query_tokens"):
      return "unit"
    lower = name.lower()
    if len(shape) == 1 and name.endswith("weight") and ("norm" in lower or "ln_" in lower):
      return "norm"
    return "weight"

  def write(self, f, name: str, shape: tuple):
    pool, size = self.pools[self.kind(name, shape)], self.POOL * self.itemsize
    left, at = int(np.prod(shape)) * self.itemsize, int(self.rng.integers(self.POOL)) * self.itemsize
    while left:
      k = min(size - at, left)
      f.write(pool[at:at + k].data)
      left, at = left - k, 0

  def save(self, path: str, tensors: list):
    """A .safetensors file (8-byte header length, JSON header padded to 8 bytes, the tensors'
    bytes back to back) of `tensors` [(name, shape)], each a fresh window of the pools."""
    header, at = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in tensors:
      n = int(np.prod(shape)) * self.itemsize
      header[name] = {"dtype": self.tag, "shape": list(shape), "data_offsets": [at, at + n]}
      at += n
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
      f.write(struct.pack("<Q", len(text)) + text)
      for name, shape in tensors:
        self.write(f, name, shape)
    return at


def save_hub_layout(config: dict, fixture_dir: str, path: str):
  """Random weights in the file's dtype under the hub's names, sharded (<= 512 MiB a shard) with the
  index; the sparse `config` as config.json; the fixture's other JSON files copied.
  -> (number of tensors, torch dtype)."""
  dtype = DTYPES[config.get("torch_dtype", "float32")]
  pools = Pools(dtype)
  groups, current, size = [], [], 0
  for name, shape in hub_tensors(config).items():
    nbytes = int(np.prod(shape)) * pools.itemsize
    if current and size + nbytes > SHARD_BYTES:
      groups.append(current)
      current, size = [], 0
    current.append((name, shape))
    size += nbytes
  groups.append(current)
  weight_map, total = {}, 0
  for i, group in enumerate(groups):
    file = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
    total += pools.save(os.path.join(path, file), group)
    weight_map.update({name: file for name, _ in group})
  with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(config, f)
  for file in ("generation_config.json", "preprocessor_config.json"):
    if os.path.exists(os.path.join(fixture_dir, file)):
      shutil.copy(os.path.join(fixture_dir, file), path)
  return len(weight_map), dtype


def load_hf_reference(config: dict, path: str):
  """HF's own `from_pretrained` of the saved checkpoint, in fp32 with eager attention; every tensor
  must be consumed and every weight found (HF would otherwise initialise it at random)."""
  model, info = hf_class(config).from_pretrained(path, dtype=torch.float32, attn_implementation="eager",
                                                 output_loading_info=True)
  assert not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
  assert all(p.dtype == torch.float32 for p in model.parameters())  # every sub-model, whatever the file's dtype
  return model.eval()


# ---- realistic inputs --------------------------------------------------------------------------
def image(size, seed=0):
  from PIL import Image
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[:size, :size]
  base = np.stack([x, y, (x + y) // 2], -1) * (255.0 / size)
  return Image.fromarray(np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8))


def llava_next_batch(config, fixture_dir):
  with open(os.path.join(fixture_dir, "preprocessor_config.json")) as f:
    pre = json.load(f)
  pre = {k: v for k, v in pre.items() if k not in ("image_processor_type", "processor_class", "aspect_ratio_setting")}
  proc = getattr(transformers, "LlavaNextImageProcessorPil", None) or transformers.LlavaNextImageProcessor
  pix = proc(**pre)(image(672), return_tensors="np")
  v = config["vision_config"]
  n = len(anyres.image_feature_order(pix["image_sizes"][0], config["image_grid_pinpoints"], v["image_size"],
                                     v["image_size"] // v["patch_size"], 0, -1))
  rng = np.random.default_rng(1)
  ids = np.array([[1] + [config["image_token_index"]] * n + list(rng.integers(3, 32000, 24))])
  return {"input_ids": ids, "attention_mask": np.ones_like(ids), "pixel_values": pix["pixel_values"].astype(np.float32),
          "image_sizes": pix["image_sizes"]}


def llava_onevision_batch(config, fixture_dir):
  with open(os.path.join(fixture_dir, "preprocessor_config.json")) as f:
    pre = json.load(f)
  pre = {k: v for k, v in pre.items() if k not in ("image_processor_type", "processor_class")}
  pix = transformers.LlavaOnevisionImageProcessorPil(**pre)(image(384), return_tensors="np")
  v = config["vision_config"]
  n = llava_onevision.num_image_tokens(pix["image_sizes"][0], config["image_grid_pinpoints"], v["image_size"],
                                       v["image_size"] // v["patch_size"], 9)
  rng = np.random.default_rng(1)
  ids = np.array([[151644] + [config["image_token_index"]] * n + list(rng.integers(3, 150000, 24))])
  return {"input_ids": ids, "attention_mask": np.ones_like(ids), "pixel_values": pix["pixel_values"].astype(np.float32),
          "image_sizes": pix["image_sizes"]}


def instructblip_batch(config, fixture_dir):
  with open(os.path.join(fixture_dir, "preprocessor_config.json")) as f:
    pre = json.load(f)
  pre = {k: v for k, v in pre.items() if k not in ("image_processor_type", "processor_class")}
  proc = getattr(transformers, "BlipImageProcessorPil", None) or transformers.BlipImageProcessor
  pix = proc(**pre)(image(224), return_tensors="np")["pixel_values"]
  rng = np.random.default_rng(1)
  qids = np.array([[101] + list(rng.integers(1000, 30000, 14)) + [102]])
  ids = np.array([[config["image_token_index"]] * config["num_query_tokens"] + [1] + list(rng.integers(3, 32000, 24))])
  return {"input_ids": ids, "attention_mask": np.ones_like(ids), "pixel_values": pix.astype(np.float32),
          "qformer_input_ids": qids, "qformer_attention_mask": np.ones_like(qids)}


def qwen2_vl_batch(config, fixture_dir):
  proc = qwen2_vl_inputs.image_processor(min_pixels=448 * 448, max_pixels=448 * 448)
  pix = proc([image(448)], return_tensors="np")
  assert pix["image_grid_thw"].tolist() == [[1, 32, 32]]
  rng = np.random.default_rng(1)
  start, end = config["vision_start_token_id"], config["vision_end_token_id"]
  row = [151644] + list(rng.integers(3, 150000, 6)) + [start, config["image_token_id"], end] + list(
      rng.integers(3, 150000, 20)) + [151645]
  return qwen2_vl_inputs.build_batch([row], pix["pixel_values"], pix["image_grid_thw"], config, pad_id=151643)


def qwen2_5_vl_batch(config, fixture_dir):
  return qwen2_vl_batch(config, fixture_dir)  # the same processor and prompt layout


def qwen2_audio_batch(config, fixture_dir):
  with open(os.path.join(fixture_dir, "preprocessor_config.json")) as f:
    pre = json.load(f)
  extractor = qwen2_audio_inputs.feature_extractor(chunk_length=pre["chunk_length"], n_fft=pre["n_fft"],
                                                   hop_length=pre["hop_length"], sampling_rate=pre["sampling_rate"])
  t = np.arange(2 * pre["sampling_rate"]) / pre["sampling_rate"]
  rng = np.random.default_rng(0)
  wave = (0.3 * np.sin(2 * np.pi * 220 * t * (1 + t)) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
  feats = qwen2_audio_inputs.extract_features(extractor, [wave])
  rng = np.random.default_rng(1)
  row = [151644] + list(rng.integers(3, 150000, 6)) + [151647, config["audio_token_index"], 151648] + list(
      rng.integers(3, 150000, 20)) + [151645]
  return qwen2_audio_inputs.build_batch([row], feats["input_features"], feats["feature_attention_mask"], config,
                                        pad_id=151643)


# ---- probe modules ---------------------------------------------------------------------------
def act_modules(kind, hf):
  """HF modules whose forward output is each probe module's neuron activation, per layer."""
  if kind in ("llava_next", "llava_onevision"):
    inner = hf.model
    return {"llm": [l.mlp.act_fn for l in inner.language_model.layers],
            "vision": [l.mlp.activation_fn for l in inner.vision_tower.encoder.layers],
            "projector": [inner.multi_modal_projector.act]}
  if kind == "instructblip":
    return {"llm": [l.mlp.act_fn for l in hf.language_model.model.layers],
            "vision": [l.mlp.activation_fn for l in hf.vision_model.encoder.layers],
            "qformer_query": [l.intermediate_query.intermediate_act_fn for l in hf.qformer.encoder.layer],
            "qformer_text": [l.intermediate.intermediate_act_fn for l in hf.qformer.encoder.layer]}
  if kind == "qwen2_vl":
    return {"llm": [l.mlp.act_fn for l in hf.model.language_model.layers],
            "vision": [b.mlp.act for b in hf.model.visual.blocks]}
  if kind == "qwen2_5_vl":
    return {"llm": [l.mlp.act_fn for l in hf.model.language_model.layers],
            "vision": [b.mlp.act_fn for b in hf.model.visual.blocks]}
  return {"llm": [l.mlp.act_fn for l in hf.model.language_model.layers],
          "audio": [l.activation_fn for l in hf.model.audio_tower.layers]}


def ours_like(kind, name, ours, theirs, prepared):
  """Our captured neurons in the layout of HF's recorded ones."""
  if kind in ("llava_next", "llava_onevision") and name in ("vision", "projector"):
    return ours[:, prepared["tile_valid"]]
  if kind == "qwen2_5_vl" and name == "vision":  # HF's blocks see the patches in window order
    return ours[:, 0][:, np.argsort(prepared["vision_windows"], kind="stable")]
  return ours.reshape(theirs.shape)


BATCHES = {"llava_next": llava_next_batch, "instructblip": instructblip_batch, "qwen2_vl": qwen2_vl_batch,
           "qwen2_5_vl": qwen2_5_vl_batch, "qwen2_audio": qwen2_audio_batch, "llava_onevision": llava_onevision_batch}
NAMES = ["llava-hf/llava-v1.6-vicuna-7b-hf", "llava-hf/llava-v1.6-mistral-7b-hf", "Salesforce/instructblip-vicuna-7b",
         "Qwen/Qwen2-VL-7B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct", "Qwen/Qwen2-Audio-7B-Instruct",
         "llava-hf/llava-onevision-qwen2-7b-ov-hf"]


def max_abs(a, b, valid) -> float:
  """max |a - b| over the valid positions of [B, T, V] logits, one row at a time (the full
  difference of two vocab-wide logit arrays would be GBs more at the peak)."""
  out = 0.0
  for i, t in zip(*np.nonzero(valid)):
    out = max(out, float(np.abs(a[i, t] - b[i, t]).max()))
  return out


def peak_rss_gb() -> float:
  import resource
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


@pytest.mark.heavy
@pytest.mark.parametrize("name", NAMES)
def test_depth_cut_hub_checkpoint_matches_hf(name, tmp_path):
  fixture_dir = os.path.join(FIXTURES, name.replace("/", "__"))
  with open(os.path.join(fixture_dir, "config.json")) as f:
    config = depth_cut(json.load(f))
  kind = config["model_type"]
  clock = [(time.time(), time.process_time())]
  lap = lambda: clock.append((time.time(), time.process_time())) or tuple(
      round(b - a, 1) for a, b in zip(clock[-2], clock[-1]))  # (wall, CPU of all threads) seconds
  seconds = {}
  n_tensors, dtype = save_hub_layout(config, fixture_dir, str(tmp_path))
  seconds["save"] = lap()
  assert len([f for f in os.listdir(tmp_path) if f.endswith(".safetensors")]) >= 2  # sharded, with the index
  hf = load_hf_reference(config, str(tmp_path))
  seconds["hf_load"] = lap()
  filled = read_config(str(tmp_path))
  batch = BATCHES[kind](filled, fixture_dir)
  modules = act_modules(kind, hf)
  ref, rec = hf_hooks.run_hf(hf, modules, batch)
  ref_logits = ref.logits.numpy()
  del hf, ref, modules
  gc.collect()
  seconds["hf"] = lap()

  model = mmneuron_jax.load_hf(str(tmp_path))
  seconds["load"] = lap()
  out = model.apply(model.params, batch, capture=tuple(model.probe_modules))
  seconds["ours"] = lap()
  valid = batch["attention_mask"].astype(bool)
  logits = np.asarray(out.logits)
  assert logits.shape == ref_logits.shape
  diffs = {"logits": max_abs(logits, ref_logits, valid)}
  prepared = model.prepare(batch)
  assert set(rec) == set(model.probe_modules)
  for m, theirs in rec.items():
    ours = np.asarray(out.aux[m])
    if m == "llm":
      ours, theirs = ours[:, valid], theirs[:, valid]
    else:
      ours = ours_like(kind, m, ours, theirs, prepared)
    assert ours.shape == theirs.shape, m
    assert ours.shape[0] == model.probe_modules[m][0] and ours.shape[-1] == model.probe_modules[m][1], m
    diffs[m] = float(np.abs(ours - theirs).max())
  print(f"\n{name}: {n_tensors} tensors ({dtype}), tokens {batch['input_ids'].shape[1]}, max-abs {diffs}, "
        f"peak RSS {peak_rss_gb():.1f} GB, (wall, cpu) seconds {seconds}")
  assert max(diffs.values()) <= TOL, diffs
  del model, out
  gc.collect()
