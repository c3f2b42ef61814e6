"""Host memory of `load_hf`: peak RSS over the checkpoint's bytes, for fp32 and bf16 targets.

The checkpoint: a preset's hub config (`--preset`, any of `models/presets.py`, i.e. every family;
default llava-v1.6-vicuna-7b-hf) at full width, 2 layers a stack, random fp16 weights, sharded (1 GiB
shards) with the index: LLaVA-NeXT under the hub's tensor names, the other presets under HF's
transformers-v5 names (every family's rules read both). Each load runs in a fresh process; "peak -
base" is its peak RSS minus its RSS after the imports.

  python benchmarks/load_memory.py [--preset Qwen/Qwen2.5-VL-7B-Instruct] [--layers 2] [--dir /tmp/load_memory_ckpt]
"""
import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, re, sys, time
import jax, numpy as np
import mmneuron_jax
# VmHWM: this address space's peak RSS (ru_maxrss would carry the parent's over fork + exec).
rss = lambda: int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1)) * 1024
base = rss()
t = time.time()
model = mmneuron_jax.load_hf(sys.argv[1], dtype=sys.argv[2])
jax.block_until_ready(model.params)
print(json.dumps({"base": base, "peak": rss(), "seconds": time.time() - t,
                  "param_bytes": int(sum(x.nbytes for x in jax.tree_util.tree_leaves(model.params)))}))
"""

HUB_NAMES = (("model.language_model.", "language_model.model."), ("lm_head.", "language_model.lm_head."),
             ("model.vision_tower.", "vision_tower."), ("model.multi_modal_projector.", "multi_modal_projector."),
             ("model.image_newline", "image_newline"))


DEFAULT_PRESET = "llava-hf/llava-v1.6-vicuna-7b-hf"
DEPTH_FIELDS = ("num_hidden_layers", "depth", "encoder_layers")  # a stack's depth, in any (sub-)config


def depth_cut(config: dict, layers: int) -> dict:
  """Every stack of a sparse hub config cut to `layers`: the depth fields the file sets (top level or a
  sub-config), then those a sub-config's defaults would leave deeper (written into that sub-config)."""
  import transformers

  def filled():
    cls = transformers.CONFIG_MAPPING[config["model_type"]]
    return cls(**{k: v for k, v in config.items() if k != "model_type"}).to_dict()

  for target in [config] + [v for v in config.values() if isinstance(v, dict)]:
    for field in DEPTH_FIELDS:
      if isinstance(target.get(field), int) and target[field] > layers:
        target[field] = layers
  for sub, values in filled().items():
    for field in DEPTH_FIELDS:
      if isinstance(values, dict) and isinstance(values.get(field), int) and values[field] > layers:
        config.setdefault(sub, {})[field] = layers
  return config


def write_checkpoint(path: str, layers: int, shard_bytes: int = 1 << 30, name: str = DEFAULT_PRESET) -> int:
  """Random fp16 weights of preset `name`, depth-cut, in the hub's layout; returns the tensor bytes."""
  import numpy as np
  import torch
  import transformers
  from safetensors.numpy import save_file
  from mmneuron_jax.convert import hf_config
  from mmneuron_jax.models.presets import preset
  config = depth_cut(preset(name), layers)
  hf_cfg = transformers.AutoConfig.for_model(config["model_type"], **{k: v for k, v in config.items() if k != "model_type"})
  with torch.device("meta"):  # the hub file names its HF class
    shapes = {k: tuple(v.shape) for k, v in getattr(transformers, config["architectures"][0])(hf_cfg).state_dict().items()}
  hub_names = HUB_NAMES if config["model_type"] == "llava_next" else (("", ""),)
  os.makedirs(path, exist_ok=True)
  rng = np.random.default_rng(0)
  shards, current, size, total = [], {}, 0, 0
  for name, shape in shapes.items():
    hub = next(theirs + name[len(ours):] for ours, theirs in hub_names if name.startswith(ours))
    x = (0.02 * rng.standard_normal(shape, np.float32)).astype(np.float16)
    if current and size + x.nbytes > shard_bytes:
      shards.append(current)
      current, size = {}, 0
    current[hub] = x
    size += x.nbytes
    total += x.nbytes
  shards.append(current)
  weight_map = {}
  for i, shard in enumerate(shards):
    file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
    save_file(shard, os.path.join(path, file), metadata={"format": "pt"})
    weight_map.update({k: file for k in shard})
  with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(hf_config.fill(config)[0], f)  # filled, so that older code reads it too
  return total


def main():
  parser = argparse.ArgumentParser()
  from mmneuron_jax.models.presets import PRESETS
  parser.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS))
  parser.add_argument("--layers", type=int, default=2)
  parser.add_argument("--dir", default="/tmp/load_memory_ckpt")
  parser.add_argument("--code", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      help="repository root whose mmneuron_jax to measure")
  args = parser.parse_args()
  index = os.path.join(args.dir, "model.safetensors.index.json")
  if os.path.exists(index):  # reuse a checkpoint written before
    with open(index) as f:
      ckpt = json.load(f)["metadata"]["total_size"]
  else:
    ckpt = write_checkpoint(args.dir, args.layers, name=args.preset)
  env = dict(os.environ, PYTHONPATH=args.code, JAX_PLATFORMS="cpu")
  print(f"checkpoint: {args.preset} config, {args.layers} layers a stack, fp16, {ckpt / 2**30:.2f} GiB")
  print("| target | params GiB | peak - base GiB | (peak - base) / checkpoint | seconds |")
  print("|---|---|---|---|---|")
  for dtype in ("float32", "bfloat16"):
    out = subprocess.run([sys.executable, "-c", CHILD, args.dir, dtype], env=env, capture_output=True, text=True,
                         cwd=args.code)
    if out.returncode:
      sys.exit(out.stderr)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    grow = r["peak"] - r["base"]
    print(f"| {dtype} | {r['param_bytes'] / 2**30:.2f} | {grow / 2**30:.2f} | {grow / ckpt:.2f}x | {r['seconds']:.1f} |")


if __name__ == "__main__":
  main()
