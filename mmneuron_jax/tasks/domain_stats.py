"""MMNeuron statistics: per module, per domain counts of activation > 0 (and sums), resumable.

The stream of batches is planned on the host before anything runs (from image sizes alone:
vision tokens per sample = valid tiles x (1 + patches)), so a resumed run replays exactly the
same batches and its totals are bit-identical to an uninterrupted run.
"""
import dataclasses
import hashlib
import json

import numpy as np

from mmneuron_jax.analysis import stats
from mmneuron_jax.data.batching import chunks, pad_batch
from mmneuron_jax.models import anyres


@dataclasses.dataclass(frozen=True)
class PlannedBatch:
  """One batch: the domain index and the records (by position in that domain's list)."""
  domain: int
  indices: tuple[int, ...]


def vision_tokens(size_hw, config: dict) -> int:
  """Vision-encoder tokens one image costs in LLaVA-NeXT (all tiles, CLS included)."""
  v = config["vision_config"]
  tiles = anyres.num_tiles(size_hw, config["image_grid_pinpoints"], v["image_size"])
  return tiles * ((v["image_size"] // v["patch_size"]) ** 2 + 1)


def plan(records_by_domain: dict, sizes_by_domain: dict, config: dict, batch_size: int,
         max_samples: int | None, vision_token_target: int | None) -> tuple[list[PlannedBatch], dict]:
  """Take each domain's records in order until `max_samples` or `vision_token_target` is reached.

  sizes_by_domain: domain -> list of (h, w). Returns (batches, per-domain {'samples', 'vision_tokens'}).
  """
  batches, summary = [], {}
  for d, domain in enumerate(records_by_domain):
    taken, tokens = [], 0
    for i, size in enumerate(sizes_by_domain[domain]):
      if (max_samples is not None and len(taken) >= max_samples) or (
          vision_token_target is not None and tokens >= vision_token_target):
        break
      taken.append(i)
      tokens += vision_tokens(size, config)
    summary[domain] = {"samples": len(taken), "vision_tokens": tokens}
    batches += [PlannedBatch(d, tuple(c)) for c in chunks(taken, batch_size)]
  return batches, summary


def fingerprint(*parts) -> str:
  return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def max_tile_slots(config: dict) -> int:
  v = config["vision_config"]
  return 1 + max((h // v["image_size"]) * (w // v["image_size"]) for h, w in config["image_grid_pinpoints"])


def make_step_fn(model, params, inputs, records_by_domain, prompt_fn, load_image, num_groups, batch_size,
                 image_only=False):
  """PlannedBatch -> {'field/module': np.ndarray} partial sums of that batch."""
  step = stats.make_step(model, num_groups)
  domains = list(records_by_domain)
  slots = max_tile_slots(model.config)

  def step_fn(planned: PlannedBatch):
    recs = [records_by_domain[domains[planned.domain]][i] for i in planned.indices]
    batch = inputs([prompt_fn(r) for r in recs], [load_image(r) for r in recs])
    pad_id = inputs.tokenizer.pad_token_id or 0
    batch = pad_batch(batch, batch_size, 64, slots, pad_id)
    sample_groups = np.full(batch_size, -1, np.int32)
    sample_groups[:len(recs)] = planned.domain
    groups = model.token_groups(batch, sample_groups, image_only)
    out = step(params, model.device_batch(batch), stats.to_device_groups(groups))
    return stats.flatten(out)

  return step_fn
