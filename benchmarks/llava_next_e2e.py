"""End-to-end MMNeuron statistics throughput on a LLaVA-NeXT-7B-shaped model: samples/s.

COMMAND (one GPU, 7B shape, random weights; ~6 min):  python benchmarks/llava_next_e2e.py
COMMAND (CPU, shrunk widths, same image geometry):    python benchmarks/llava_next_e2e.py --scale=tiny

One sample = one 672x672 image (anyres: base tile + 2x2 grid = 5 CLIP tiles of 577 tokens)
and the statistics prompt `<image>\\n{question}` with a ~30-token question: 2928 image-feature
tokens + text = ~2.96k LLM tokens. Statistics = per-neuron activation counts for `llm`,
`vision` and `projector` (the MMNeuron pass).

Rows, all in this one process, on the same weights (HF random init, seed 0) and the same input:
  HF fp32 bs1 (authors)  LlavaNextForConditionalGeneration in fp32 (no TF32), batch 1, forward
                         hooks adding (act > 0).sum() per layer, like the authors' loop
  HF bf16 bs1 + hooks    the same in bf16
  JAX ...                our statistics step (`analysis.stats.make_step`: GroupStats in the layer
                         scans, count / sum / sum of squares per group) on a batch of --batch
                         copies, for each (dtype, attention kernel, fp32 matmul algorithm) variant
  JAX ... + host preprocessing, sequential / prefetch 2   (--pipeline, first JAX variant that ran)
                         the whole statistics loop of `tasks/mmneuron.stage_stats` over
                         --pipeline_batches batches: per sample the PNG decoded, the HF image
                         processor, our prompt ids / padding / anyres index / token groups
                         (`domain_stats.make_step_fn`'s prepare), the device step, host totals in a
                         StatsStore (`accumulate`), with the host part in line or 2 batches ahead on
                         a thread (`io/prefetch.py`). Token ids come from a stub tokenizer (those
                         of the model-only rows; no tokenizer download).
The other JAX rows are model time only: inputs are preprocessed once (the HF image processor + our
anyres index run on the host; their cost per sample is printed separately).
FLOPs per sample (as computed; attention over the full T x T): LLM matmuls + attention, CLIP
tiles, projector; the LM head is excluded (statistics do not need logits). "FLOP limit" = the
measured bf16 matmul peak / FLOPs per sample.

Order (memory): HF runs first and is deleted before JAX builds its params from a host copy of
the same weights, so the 7B model is never held twice in fp32 on the GPU.
Writes a markdown table (and .json) to --out and prints it.
"""
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

from absl import app, flags

from benchmarks.bench_utils import _git_commit, measure_peak, write_results

PRESET = "llava-hf/llava-v1.6-vicuna-7b-hf"
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
GROUPS = 5  # statistics groups (the MMNeuron domains)

_SCALE = flags.DEFINE_enum("scale", "7b", ["7b", "tiny"], "7b: the real shape; tiny: shrunk widths and depths.")
_BATCH = flags.DEFINE_integer("batch", 8, "JAX samples per step.")
_HF_SAMPLES = flags.DEFINE_integer("hf_samples", 6, "Timed HF batch-1 samples per dtype.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed JAX steps per variant (median).")
_VARIANTS = flags.DEFINE_list(
    "variants", "bfloat16:xla:highest,bfloat16:cudnn:highest,float32:xla:highest,float32:xla:bf16_6x",
    "JAX variants dtype:attention:fp32_matmul.")
_HF = flags.DEFINE_list("hf", "float32,bfloat16", "HF batch-1 rows to run (dtypes).")
_TEXT = flags.DEFINE_integer("text_tokens", 30, "Question tokens after the image.")
_PIPELINE = flags.DEFINE_bool("pipeline", True, "Also time the statistics loop with host preprocessing, "
                               "sequential and prefetch 2, for the first JAX variant that ran.")
_PIPELINE_BATCHES = flags.DEFINE_integer("pipeline_batches", 4, "Batches of --batch per pipeline timing.")
_OUT = flags.DEFINE_string("out", None, "Markdown path (default benchmarks/results/<backend>_llava_next_e2e.md).")


def hf_config(scale: str) -> dict:
  from mmneuron_jax.models.presets import preset
  cfg = preset(PRESET)
  if scale == "tiny":
    cfg["text_config"].update(hidden_size=128, intermediate_size=344, num_hidden_layers=2, num_attention_heads=4,
                              num_key_value_heads=4)
    cfg["vision_config"].update(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4)
  return cfg


def build_hf(cfg: dict, device: str):
  import torch
  import transformers
  torch.manual_seed(0)
  config = transformers.LlavaNextConfig.from_dict(cfg)
  default = torch.get_default_dtype()
  torch.set_default_dtype(torch.bfloat16)  # built in bf16 on the device; .float() for the fp32 rows
  try:
    with torch.device(device):
      tm = transformers.LlavaNextForConditionalGeneration(config).eval()
  finally:
    torch.set_default_dtype(default)
  return tm.requires_grad_(False)


def image_processor(cfg: dict):
  import transformers
  v = cfg["vision_config"]
  cls = getattr(transformers, "LlavaNextImageProcessorPil", None) or transformers.LlavaNextImageProcessor
  return cls(image_grid_pinpoints=cfg["image_grid_pinpoints"], size={"shortest_edge": v["image_size"]},
             crop_size={"height": v["image_size"], "width": v["image_size"]}, image_mean=CLIP_MEAN,
             image_std=CLIP_STD)


def image_and_text(text_tokens: int):
  """The benchmark's 672x672 random image (PIL) and question token ids."""
  import numpy as np
  from PIL import Image
  rng = np.random.default_rng(0)
  image = Image.fromarray(rng.integers(0, 256, (672, 672, 3), dtype=np.uint8))
  return image, rng.integers(3, 32000, text_tokens).tolist()


def sample(cfg: dict, text_tokens: int):
  """One 672x672 image + prompt -> HF-named numpy batch of one."""
  import numpy as np
  from mmneuron_jax.models import anyres
  v = cfg["vision_config"]
  proc = image_processor(cfg)
  image, text = image_and_text(text_tokens)
  t0 = time.perf_counter()
  pix = proc([image], return_tensors="np")
  n_image = len(anyres.image_feature_order((672, 672), cfg["image_grid_pinpoints"], v["image_size"],
                                           v["image_size"] // v["patch_size"], 0, -1))
  prep_s = time.perf_counter() - t0
  ids = np.asarray([[1] + [cfg["image_token_index"]] * n_image + text], np.int64)
  return {"input_ids": ids, "attention_mask": np.ones_like(ids), "pixel_values": pix["pixel_values"].astype(np.float32),
          "image_sizes": np.asarray(pix["image_sizes"])}, prep_s


def hf_modules(tm):
  inner = tm.model
  vt = inner.vision_tower
  vt = getattr(vt, "vision_model", vt)
  return {"llm": [l.mlp.act_fn for l in inner.language_model.layers],
          "vision": [l.mlp.activation_fn for l in vt.encoder.layers],
          "projector": [inner.multi_modal_projector.act]}


def hf_loop(tm, batch: dict, n: int, device: str):
  """Authors' style: batch 1, hooks accumulating (act > 0) counts. -> (seconds per sample, counts)."""
  import torch
  mods = hf_modules(tm)
  counts = {k: [None] * len(v) for k, v in mods.items()}
  handles = []
  for name, layers in mods.items():
    for i, mod in enumerate(layers):
      def hook(_, __, out, name=name, i=i):
        c = (out > 0).reshape(-1, out.shape[-1]).sum(0)
        counts[name][i] = c if counts[name][i] is None else counts[name][i] + c
      handles.append(mod.register_forward_hook(hook))
  dtype = next(tm.parameters()).dtype
  tb = {k: torch.from_numpy(v).to(device) for k, v in batch.items()}
  tb["pixel_values"] = tb["pixel_values"].to(dtype)
  sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
  try:
    with torch.inference_mode():
      tm(**tb)  # warm-up (not counted below)
      for k in counts:
        counts[k] = [None] * len(counts[k])
      sync()
      t0 = time.perf_counter()
      for _ in range(n):
        tm(**tb)
      sync()
      per = (time.perf_counter() - t0) / n
  finally:
    for h in handles:
      h.remove()
  return per, {k: torch.stack(v).float().cpu().numpy() / n for k, v in counts.items()}


def host_weights(tm) -> dict:
  from mmneuron_jax.convert.memory_reader import to_numpy
  return {k: to_numpy(v) for k, v in tm.state_dict().items()}


def jax_model(cfg: dict, weights: dict, dtype: str, attention: str, fp32_matmul: str):
  from mmneuron_jax.api import build_model
  from mmneuron_jax.convert.mapping import apply_rules
  from mmneuron_jax.convert.memory_reader import MemoryReader
  from mmneuron_jax.models.registry import family_for
  family = family_for(cfg)
  params = apply_rules(MemoryReader(weights), family.hf_rules(family.Config.from_hf(cfg)), dtype, ignore=family.IGNORE)
  return build_model(cfg, params, dtype, attention=attention, fp32_matmul=fp32_matmul)


def jax_stats(model, one: dict, b: int, repeats: int):
  """-> (seconds per step, compile+first s, counts per sample {module: [L, F]}, host prep s per sample)."""
  import jax
  import numpy as np
  from mmneuron_jax.analysis import stats
  batch = {k: np.repeat(v, b, axis=0) for k, v in one.items()}
  t0 = time.perf_counter()
  groups = model.token_groups(batch, (np.arange(b) % GROUPS).astype(np.int32))
  dev = model.device_batch(batch)
  prep_s = (time.perf_counter() - t0) / b
  step = stats.make_step(model, GROUPS)
  g = stats.to_device_groups(groups)
  t0 = time.perf_counter()
  out = jax.block_until_ready(step(model.params, dev, g))
  first = time.perf_counter() - t0
  jax.block_until_ready(step(model.params, dev, g))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(step(model.params, dev, g))
    times.append(time.perf_counter() - t0)
  counts = {k: np.asarray(v["count"]).sum(1) / b for k, v in out.items()}  # [L, G, F] -> per sample
  return statistics.median(times), first, counts, prep_s


class IdTokenizer:
  """Stand-in tokenizer for `LlavaNextInputs`: text = space-separated token ids, BOS (1) first."""
  pad_token_id = 0

  def convert_ids_to_tokens(self, i: int) -> str:
    return f" {i} "

  def __call__(self, text: str) -> dict:
    return {"input_ids": [1] + [int(w) for w in text.split()]}


def pipeline_rates(model, cfg: dict, text_tokens: int, b: int, n_batches: int, depths=(0, 2)) -> dict:
  """-> {prefetch depth: samples/s} of the statistics loop with host preprocessing (see the module
  docstring): `domain_stats.make_step_fn` + `accumulate` into a temporary StatsStore."""
  import io
  import tempfile
  from PIL import Image
  from mmneuron_jax.io.accumulate import accumulate
  from mmneuron_jax.analysis.stats import store_spec
  from mmneuron_jax.data.inputs.llava_next import LlavaNextInputs
  from mmneuron_jax.io.stats_store import StatsStore
  from mmneuron_jax.tasks.mmneuron import domain_stats
  image, text = image_and_text(text_tokens)
  png = io.BytesIO()
  image.save(png, "PNG")
  records = {f"domain{g}": [png.getvalue()] * b for g in range(GROUPS)}
  prompt = "<image>\n" + " ".join(map(str, text))
  inputs = LlavaNextInputs(IdTokenizer(), image_processor(cfg), cfg)
  step = domain_stats.make_step_fn(model, model.params, inputs, records, lambda r: prompt,
                                   lambda r: Image.open(io.BytesIO(r)), GROUPS, b)
  batches = [domain_stats.PlannedBatch(i % GROUPS, tuple(range(b))) for i in range(n_batches)]
  step(batches[0])  # compile for the padded shape
  rates = {}
  for depth in depths:
    with tempfile.TemporaryDirectory() as d:
      store = StatsStore.open_or_create(d, store_spec(model.probe_modules, GROUPS), "benchmark")
      t0 = time.perf_counter()
      accumulate(store, ((i + 1, x) for i, x in enumerate(batches)), step.run, commit_every=n_batches,
                 progress=False, prepare=step.prepare, prefetch=depth)
      rates[depth] = n_batches * b / (time.perf_counter() - t0)
  return rates


def flops_per_sample(cfg: dict, t: int) -> float:
  tc, vc = cfg["text_config"], cfg["vision_config"]
  d, f, h, kv, layers = (tc[k] for k in ("hidden_size", "intermediate_size", "num_attention_heads",
                                         "num_key_value_heads", "num_hidden_layers"))
  hd = d // h
  llm = layers * (2 * t * (d * h * hd + 2 * d * kv * hd + h * hd * d + 3 * d * f) + 4 * t * t * h * hd)
  vd, vf, vl = vc["hidden_size"], vc["intermediate_size"], vc["num_hidden_layers"]
  n = (vc["image_size"] // vc["patch_size"]) ** 2 + 1
  tiles = 5
  vision = tiles * vl * (2 * n * (4 * vd * vd + 2 * vd * vf) + 4 * n * n * vd)
  vision += tiles * 2 * (n - 1) * 3 * vc["patch_size"] ** 2 * vd  # patch embedding
  projector = tiles * (n - 1) * 2 * (vd * d + d * d)
  return llm + vision + projector


def agreement(a: dict, b: dict) -> str:
  import numpy as np
  parts = []
  for k in a:
    x, y = a[k], b[k]
    parts.append(f"{k} {100 * np.mean(x != y):.3f}% differ (max {np.abs(x - y).max():.0f})")
  return ", ".join(parts)


def main(argv):
  del argv
  import gc

  import jax
  import torch
  cfg = hf_config(_SCALE.value)
  device = "cuda" if torch.cuda.is_available() else "cpu"
  backend = jax.default_backend()
  torch.backends.cuda.matmul.allow_tf32 = False  # HF fp32 = true fp32 (the authors' numbers)
  torch.backends.cudnn.allow_tf32 = False
  peak = measure_peak("bfloat16", 8192 if backend != "cpu" else 1024)
  peak32 = measure_peak("float32", 8192 if backend != "cpu" else 1024)
  one, proc_s = sample(cfg, _TEXT.value)
  t = one["input_ids"].shape[1]
  fps = flops_per_sample(cfg, t)
  rows, notes = [], []

  tm = build_hf(cfg, device)
  weights = host_weights(tm)
  hf_counts = {}
  for dt in ("bfloat16", "float32"):  # bf16 first: the model was built in bf16
    if dt not in _HF.value:
      continue
    if dt == "float32":
      tm = tm.float()
    per, hf_counts[dt] = hf_loop(tm, one, _HF_SAMPLES.value, device)
    rows.append({"name": f"HF {dt} bs1 + counting hooks" + (" (authors)" if dt == "float32" else ""),
                 "dtype": dt, "samples_per_s": 1 / per, "batch": 1})
  del tm
  gc.collect()
  if device == "cuda":
    torch.cuda.empty_cache()

  jax_counts, piped = {}, not _PIPELINE.value
  for variant in _VARIANTS.value:
    dt, attention, fp32_matmul = variant.split(":")
    if attention == "cudnn" and backend != "gpu":
      notes.append(f"{variant}: skipped (cuDNN attention needs a GPU)")
      continue
    try:
      model = jax_model(cfg, weights, dt, attention, fp32_matmul)
      per, first, counts, prep = jax_stats(model, one, _BATCH.value, _REPEATS.value)
      pipeline = {}
      if not piped:
        piped = True
        try:
          pipeline = pipeline_rates(model, cfg, _TEXT.value, _BATCH.value, _PIPELINE_BATCHES.value)
        except Exception as e:
          notes.append(f"pipeline ({variant}): failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
    except Exception as e:  # a kernel this backend lacks: say so, go on
      notes.append(f"{variant}: failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
      continue
    finally:
      model = None
      gc.collect()
    jax_counts[variant] = counts
    name = (f"JAX {dt} batch {_BATCH.value}, attention {attention}"
            + (f", fp32 matmul {fp32_matmul}" if dt == "float32" else ""))
    rows.append({"name": name, "dtype": dt, "samples_per_s": _BATCH.value / per, "batch": _BATCH.value,
                 "compile_s": first, "host_prep_s": prep, "variant": variant})
    for depth, rate in pipeline.items():
      rows.append({"name": f"{name} + host preprocessing, " + (f"prefetch {depth}" if depth else "sequential"),
                   "dtype": dt, "samples_per_s": rate, "batch": _BATCH.value, "prefetch": depth,
                   "batches": _PIPELINE_BATCHES.value})

  ref = {r["dtype"]: r["samples_per_s"] for r in rows if r["name"].startswith("HF")}
  limit = peak / fps
  lines = ["| run | samples/s | ms / sample | TFLOP/s | of FLOP limit | vs HF bf16 bs1 | vs HF fp32 bs1 |",
           "|---|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    s = r["samples_per_s"]
    vs = [f"{s / ref[d]:.2f}x" if d in ref else "" for d in ("bfloat16", "float32")]
    lines.append(f"| {r['name']} | {s:.2f} | {1e3 / s:.1f} | {s * fps / 1e12:.1f} | {100 * s / limit:.1f}% | "
                 f"{vs[0]} | {vs[1]} |")
  for v, c in jax_counts.items():
    d = v.split(":")[0]
    if d in hf_counts:
      notes.append(f"counts per sample, {v} vs HF {d}: {agreement(c, hf_counts[d])}")
  header = [
      f"LLaVA-NeXT-7B shape ({PRESET}, scale={_SCALE.value}, random weights), one 672x672 image -> 5 tiles, "
      f"{t} LLM tokens per sample; statistics for llm / vision / projector",
      f"JAX {jax.__version__} on {backend} ({jax.devices()[0].device_kind}); torch {torch.__version__} on {device}; "
      f"HF attention: {cfg.get('_attn_implementation', 'default (sdpa)')}",
      f"host: {platform.platform()}, {os.cpu_count()} CPUs; commit {_git_commit()}",
      f"FLOPs per sample {fps / 1e12:.2f} TFLOP; measured peak bf16 {peak / 1e12:.0f} TFLOP/s, fp32 (HIGHEST) "
      f"{peak32 / 1e12:.1f} TFLOP/s -> FLOP limit {limit:.2f} samples/s (bf16)",
      f"host preprocessing per sample (in the '+ host preprocessing' rows only): HF image processor "
      f"{proc_s * 1e3:.0f} ms, our anyres index + groups "
      + ", ".join(f"{r['host_prep_s'] * 1e3:.1f} ms" for r in rows if "host_prep_s" in r)[:80],
      "JAX compile + first step s: " + ", ".join(f"{r['variant']} {r['compile_s']:.0f}" for r in rows
                                                  if "compile_s" in r),
  ]
  text = "\n".join(header) + "\n\n" + "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
  write_results(_OUT.value, f"{backend}_llava_next_e2e_{_SCALE.value}", text,
                {"header": header, "rows": rows, "notes": notes, "flops_per_sample": fps, "peak_bf16": peak,
                 "peak_fp32": peak32})


if __name__ == "__main__":
  app.run(main)
