"""MMNeuron statistics: per module, per domain counts of activation > 0 (and sums), resumable.

The stream of batches is planned on the host before anything runs (from image sizes alone and
the family's vision-encoder cost of an image: LLaVA-NeXT valid tiles x (1 + patches), InstructBLIP
1 + patches), so a resumed run replays exactly the same batches and its totals are bit-identical
to an uninterrupted run.
"""
import dataclasses
import functools
import hashlib
import json

import numpy as np

from mmneuron_jax.analysis import finite, stats
from mmneuron_jax.data.inputs.batching import chunks
from mmneuron_jax.io import fingerprint as fingerprints
from mmneuron_jax.io.accumulate import Step
from mmneuron_jax.tasks.common import families


@dataclasses.dataclass(frozen=True)
class PlannedBatch:
  """One batch: the domain index, the records (by position in that domain's list) and the batch's
  position in the plan (0-based; -1 when built outside `plan`)."""
  domain: int
  indices: tuple[int, ...]
  number: int = -1


def _cost_fn(cost):
  """A callable (h, w) -> tokens, or a HF config dict whose family says how to count."""
  if callable(cost):
    return cost
  return functools.partial(families.family(cost.get("model_type"), "config: model_type").vision_tokens, cost)


def plan(records_by_domain: dict, sizes_by_domain: dict, cost, batch_size: int,
         max_samples: int | None, vision_token_target: int | None) -> tuple[list[PlannedBatch], dict]:
  """Take each domain's records in order until `max_samples` or `vision_token_target` is reached.

  sizes_by_domain: domain -> list of (h, w); cost: (h, w) -> vision-encoder tokens of one image
  (e.g. `inputs.num_vision_tokens`), or the model's HF config dict.
  Returns (batches, per-domain {'samples', 'vision_tokens'}).
  """
  cost = _cost_fn(cost)
  batches, summary = [], {}
  for d, domain in enumerate(records_by_domain):
    taken, tokens = [], 0
    for i, size in enumerate(sizes_by_domain[domain]):
      if (max_samples is not None and len(taken) >= max_samples) or (
          vision_token_target is not None and tokens >= vision_token_target):
        break
      taken.append(i)
      tokens += cost(size)
    summary[domain] = {"samples": len(taken), "vision_tokens": tokens}
    batches += [PlannedBatch(d, tuple(c), len(batches) + k) for k, c in enumerate(chunks(taken, batch_size))]
  return batches, summary


# Bump when the statistic's definition or accumulation changes: stores of another version refuse to resume.
STATS_VERSION = 1


def fingerprint_fields(checkpoint: str, config, domains, recs: dict, prompts: dict, batches) -> dict:
  """{field: digest} of everything the totals depend on (io/fingerprint.py); recs / prompts: domain ->
  the records used / their prompts."""
  m = config.model
  return {"checkpoint": fingerprints.checkpoint_digest(checkpoint),
          "model.dtype": m.dtype, "model.compute_dtype": m.get("compute_dtype", ""),
          "model.attention": m.get("attention", "xla"), "model.fp32_matmul": m.get("fp32_matmul", "highest"),
          "data.domains": fingerprints.digest(list(domains)),
          "records": fingerprints.records_digest([r for d in domains for r in recs[d]]),
          "prompts": fingerprints.digest([prompts[d] for d in domains]),
          "stats.positions": config.stats.positions, "stats.batch_size": int(config.stats.batch_size),
          "batch plan": fingerprints.digest([[b.domain, list(b.indices)] for b in batches]),
          "statistic version": str(STATS_VERSION)}


def fingerprint(*parts) -> str:
  return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def make_step_fn(model, params, inputs, records_by_domain, prompt_fn, load_image, num_groups, batch_size,
                 media_only=False) -> Step:
  """PlannedBatch -> {'field/module': np.ndarray} partial sums of that batch, as a `Step`:
  `prepare(planned)` loads the images, builds and pads the batch (`inputs`, the family's builder,
  data/inputs/<family>.py) and its token groups -> (device batch, device groups); `run(prepared)` is the
  statistics step and its host copy. Calling the Step does both."""
  step = stats.make_step(model, num_groups)  # sharded when the model is on a mesh
  domains = list(records_by_domain)

  def prepare(planned: PlannedBatch):
    recs = [records_by_domain[domains[planned.domain]][i] for i in planned.indices]
    batch = inputs.pad(inputs([prompt_fn(r) for r in recs], [load_image(r) for r in recs]), batch_size, 64)
    batch = model.prepare(batch)  # once: token_groups and device_batch reuse it (prepare is idempotent)
    sample_groups = np.full(batch_size, -1, np.int32)
    sample_groups[:len(recs)] = planned.domain
    groups = model.token_groups(batch, sample_groups, media_only)
    return model.device_batch(batch), stats.to_device_groups(groups), planned

  def run(prepared):
    device_batch, groups, planned = prepared
    partial = stats.flatten(step(params, device_batch, groups))
    finite.check_partial(partial, where(planned))
    return stats.without_checks(partial)

  def where(planned):
    ids = [records_by_domain[domains[planned.domain]][i].id for i in planned.indices]
    number = "" if planned.number < 0 else f"batch {planned.number} (0-based) of the statistics, "
    return f"{number}domain {domains[planned.domain]!r}, records {ids}"

  return Step(prepare, run)
