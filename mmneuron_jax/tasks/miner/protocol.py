"""The protocol a MINER run follows around the maths, resolved once and recorded in its report.

  resolve_dtype(dtype, path)            'auto' -> the checkpoint's torch_dtype (HF `torch_dtype="auto"`)
  processor_options(config)             Qwen2-VL pixel bounds / video sizing from config.data
  generation(config, path)              (Sampling, where it came from): the checkpoint's
                                        generation_config.json, or the config's own fields
  aggregation_datasets(totals, stored, include_video)
                                        the datasets whose scores enter the stage-3 aggregate
  headline(rows)                        cross-benchmark mean of the primary metric per condition
  markdown(protocol)                    the report's opening lines

Defaults are the MINER authors' (huang-kc/MINER): full sets, processor min_pixels 256*28*28 and
max_pixels 1280*28*28, each checkpoint's generation_config.json, Qwen2-VL in its checkpoint dtype
(bf16), Qwen2-Audio in float32 (their from_pretrained passed no dtype), MSVD left out of the
aggregate (their default `text_vqa5000_coco_caption5000_mmlu14042` file).
"""
import os

import numpy as np

from mmneuron_jax.io import paths
from mmneuron_jax.models.sampling import Sampling
from mmneuron_jax.tasks.common.tables import signed

DTYPES = {"bfloat16": "bfloat16", "float16": "float16", "float32": "float32", "bf16": "bfloat16",
          "fp16": "float16", "fp32": "float32"}


def resolve_dtype(dtype: str, path: str) -> str:
  """config.model.dtype -> a dtype name; 'auto' reads config.json's torch_dtype (or dtype), as HF's
  from_pretrained(torch_dtype="auto")."""
  if dtype != "auto":
    return dtype
  cfg = paths.read_json(os.path.join(path, "config.json"), missing=None) or {}
  found = cfg.get("torch_dtype") or cfg.get("dtype") or (cfg.get("text_config") or {}).get("torch_dtype")
  if found not in DTYPES:
    raise ValueError(f"config.model.dtype='auto' but {os.path.join(path, 'config.json')} names no known "
                     f"torch_dtype ({found!r}); set config.model.dtype explicitly")
  return DTYPES[found]


def processor_options(config) -> dict:
  """config.data's processor fields (families take the ones they know: `inputs.FamilySpec.options`)."""
  d = config.data
  return {k: d.get(k) for k in ("min_pixels", "max_pixels", "video_frames") if d.get(k) is not None}


def generation(config, path: str) -> tuple:
  """-> (Sampling, source). config.deactivate.generation: 'checkpoint' = <path>/generation_config.json
  (refused when absent), 'config' = the fields temperature (0 = greedy), top_k, top_p, repetition_penalty."""
  d = config.deactivate
  mode = d.get("generation", "config")
  if mode == "checkpoint":
    gen = paths.read_json(os.path.join(path, "generation_config.json"), missing=None)
    if gen is None:
      raise ValueError(f"config.deactivate.generation='checkpoint' but {path} has no generation_config.json; "
                       "use --config.deactivate.generation=config")
    return Sampling.from_generation_config(gen), "generation_config.json"
  if mode != "config":
    raise ValueError(f"config.deactivate.generation={mode!r}; expected 'checkpoint' or 'config'")
  return Sampling.from_args(d.get("temperature", 0.0), None, d.get("top_k", 0), d.get("top_p", 1.0),
                            d.get("repetition_penalty", 1.0)), "config"


def aggregation_datasets(totals: dict, stored, include_video: bool) -> tuple:
  """-> (datasets whose scores are aggregated, datasets left out). Without include_video (the
  authors' default aggregate) every dataset in which the video modality occurs (MSVD-QA) is left out,
  so the video modality is not selected."""
  stored = list(stored)
  if include_video or "video" not in stored:
    return list(totals), []
  v = stored.index("video")
  out = [d for d, t in totals.items() if bool(np.asarray(t["present"])[v])]
  used = [d for d in totals if d not in out]
  if not used:
    raise ValueError(f"every dataset has video content ({out}) and config.select.video=False leaves them all "
                     "out of the aggregate; set --config.select.video=True")
  return used, out


def headline(rows: list, metric: str = "primary") -> list:
  """Deactivation rows -> [{'condition', 'mean', 'n_benchmarks', 'vs_none', dataset: value...}]: per
  condition, the unweighted mean over benchmarks of `metric` (the paper's 0.56 -> 0.24 numbers)."""
  datasets = list(dict.fromkeys(r["dataset"] for r in rows))
  out = []
  for c in dict.fromkeys(r["condition"] for r in rows):
    vals = {r["dataset"]: float(r[metric]) for r in rows if r["condition"] == c and metric in r}
    out.append({"condition": c, "mean": float(np.mean(list(vals.values()))) if vals else float("nan"),
                "n_benchmarks": len(vals), **{d: vals.get(d) for d in datasets}})
  base = next((h["mean"] for h in out if h["condition"] == "none"), None)
  for h in out:
    h["vs_none"] = None if base is None else h["mean"] - base
  return out


CONTENT = ("image", "video", "audio")


def modality_benchmarks(present: dict, modality: str) -> list:
  """The benchmarks of `modality`: those whose samples carry it (image / video / audio), or for 'text'
  the text-only ones. present: {dataset: {modality: samples with it}}."""
  if modality == "text":
    return [d for d, p in present.items() if not any(p.get(m, 0) for m in CONTENT)]
  return [d for d, p in present.items() if p.get(modality, 0)]


def modality_effects(rows: list, present: dict, names: list) -> list:
  """Per modality with its own deactivation condition: the mean primary-metric drop (none - condition)
  over that modality's benchmarks with its own set off, with every modality's set off ('all'), and with
  'random' (as many random neurons per layer as 'all'). -> [{'modality', 'benchmarks', 'none', 'own',
  'all', 'random', 'own_drop', 'all_drop', 'random_drop'}] (a drop is None where a condition was not run)."""
  value = {(r["dataset"], r["condition"]): float(r["primary"]) for r in rows if "primary" in r}
  conditions = {r["condition"] for r in rows}
  out = []
  for m in names:
    bench = [d for d in modality_benchmarks(present, m) if (d, "none") in value]
    if m not in conditions or not bench:
      continue
    mean = {c: (float(np.mean([value[d, c] for d in bench])) if c in conditions else None)
            for c in ("none", m, "all", "random")}
    drop = lambda c: None if mean[c] is None else mean["none"] - mean[c]
    out.append({"modality": m, "benchmarks": bench, "none": mean["none"], "own": mean[m], "all": mean["all"],
                "random": mean["random"], "own_drop": drop(m), "all_drop": drop("all"),
                "random_drop": drop("random")})
  return out


def effect_verdict(effects: list) -> str:
  """One sentence: does switching off a modality's neurons lower its benchmarks more than random ones?"""
  usable = [e for e in effects if e["own_drop"] is not None and e["random_drop"] is not None]
  if not usable:
    return ""
  more = [e["modality"] for e in usable if e["own_drop"] > e["random_drop"]]
  own, rand = np.mean([e["own_drop"] for e in usable]), np.mean([e["random_drop"] for e in usable])
  if max(abs(own), abs(rand)) < 0.02:
    what = "barely changes either way (no effect at this set size)"
  elif own > rand:
    what = "falls more with the modality's own neurons off than with random ones"
  else:
    what = "does NOT fall more with the modality's own neurons off than with random ones"
  return (f"On average over modalities, a modality's benchmarks' primary metric {what}: mean drop **{signed(own)}** "
          f"(own set) vs **{signed(rand)}** (random, as many neurons per layer as all sets together); own set "
          f"worse than random for {len(more)} of {len(usable)} modalities ({', '.join(more) or 'none'}).")


def markdown(p: dict) -> list:
  """The report's opening: the protocol in a few lines."""
  g = p["generation"]
  gen = ("greedy" if not g["do_sample"] else f"sampling (temperature {g['temperature']}, top_k {g['top_k']}, "
         f"top_p {g['top_p']}, seeded)") + f", repetition_penalty {g['repetition_penalty']}"
  counts = ", ".join(f"{d} {n['scored']} scored / {n['evaluated']} evaluated" for d, n in p["samples"].items())
  lines = ["**Protocol.**",
           f"- Samples: {counts}" + (" (full sets)" if p.get("full_sets") else " (subsets: data.n_per_dataset / "
                                     "deactivate.n_per_dataset)") + ".",
           f"- Model dtype **{p['dtype']}**" + (f" (config `{p['dtype_config']}`)" if p['dtype_config'] != p['dtype']
                                               else "") + ".",
           f"- Generation ({p['generation_source']}): {gen}; up to {p['max_new_tokens']} new tokens.",
           f"- Modalities in selection: **{', '.join(p['modalities'])}** (M = {len(p['modalities'])}); aggregate over "
           f"{', '.join(p['aggregate_datasets'])}" + (f"; left out: {', '.join(p['left_out'])} (the authors' default "
                                                      "aggregate; `--config.select.video=True` adds video)"
                                                      if p["left_out"] else "") + "."]
  s = p.get("processor") or {}
  if s:
    lines.append(f"- Processor: images within [{s['min_pixels']}, {s['max_pixels']}] pixels; video frames sized "
                 f"by qwen_vl_utils, then within [{s['video_min_pixels']}, {s['video_max_pixels']}] "
                 f"(`video_frames={s['video_frames']}`).")
  lines.append(f"- Metric: each benchmark's `primary` ({p['metric']}).")
  return lines + [""]
