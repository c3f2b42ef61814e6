"""Atlas statistics: per chosen neuron and group, the top-k samples (value, sample, position of
the sample's best token) and counts of activations above fixed histogram edges, reduced in the layer scan
(`nn.topk_probe.TopKProbe`) and kept in a `StatsStore` (resumable, crash-safe).

Top-k lists do not add, so this module has its own small loop over the stats store: a batch's
partial is merged into the totals (histogram counts add; top-k lists are merged and re-cut,
ties broken by sample then position), committed every few batches with the cursor; a resumed run
skips the batches the store has counted and ends with identical totals.
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from mmneuron_jax.analysis import finite
from mmneuron_jax.io.accumulate import Step
from mmneuron_jax.io import prefetch as prefetching
from mmneuron_jax.io.progress import Progress
from mmneuron_jax.models.base import forward
from mmneuron_jax.nn.topk_probe import TopKProbe

# Histogram edges (activation units): the negative lobe of SiLU / GELU, then 1-2-5 steps.
EDGES = (-0.2, -0.1, -0.05, -0.02, 0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
VERSION = 2  # 2: one example per sample


@dataclasses.dataclass(frozen=True)
class Targets:
  """The neurons of one module the atlas follows: layer int[S], index int[S] (sorted by layer,
  index), member bool[S, G] (in that group's set), cols int32[K] (union of indices), col int[S]
  (position of each neuron's index in cols)."""
  module: str
  layer: np.ndarray
  index: np.ndarray
  member: np.ndarray
  cols: np.ndarray
  col: np.ndarray

  @property
  def size(self) -> int:
    return len(self.layer)


def targets_from_set(neuron_set, max_neurons: int = 0) -> Targets:
  """NeuronSet -> Targets over the neurons in any group (all of them, or the first
  `max_neurons` by (layer, index) when > 0)."""
  any_group = neuron_set.mask.any(axis=0)  # [L, F]
  layer, index = np.nonzero(any_group)
  if max_neurons and len(layer) > max_neurons:
    logging.info("atlas: %s has %d neurons; following the first %d", neuron_set.module, len(layer), max_neurons)
    layer, index = layer[:max_neurons], index[:max_neurons]
  member = np.transpose(neuron_set.mask[:, layer, index])  # [S, G]
  cols = np.unique(index).astype(np.int32)
  return Targets(neuron_set.module, layer.astype(np.int64), index.astype(np.int64), member, cols,
                 np.searchsorted(cols, index))


def store_spec(targets: dict, num_groups: int, k: int, edges=EDGES) -> dict:
  """StatsStore spec: per module m, value/m float64[S, G, k], sample/m and position/m
  int64[S, G, k], above/m int64[S, G, E], tokens/m int64[G]."""
  spec = {}
  for m, t in targets.items():
    spec[f"value/{m}"] = ((t.size, num_groups, k), "float64")
    spec[f"sample/{m}"] = ((t.size, num_groups, k), "int64")
    spec[f"position/{m}"] = ((t.size, num_groups, k), "int64")
    spec[f"above/{m}"] = ((t.size, num_groups, len(edges)), "int64")
    spec[f"tokens/{m}"] = ((num_groups,), "int64")
  return spec


def empty_totals(spec: dict) -> dict:
  """Totals before the first batch: top-k values -inf, samples / positions -1, counts 0."""
  out = {}
  for name, (shape, dtype) in spec.items():
    field = name.split("/", 1)[0]
    fill = -np.inf if field == "value" else (-1 if field in ("sample", "position") else 0)
    out[name] = np.full(shape, fill, dtype)
  return out


def merge(totals: dict, partial: dict) -> dict:
  """Totals + one batch's partial: counts add; each top-k list is the k best of both, ordered
  by value (descending), then sample, then position (ascending); empty slots (-inf) last."""
  out = {}
  for name in sorted(totals):
    field, m = name.split("/", 1)
    if field in ("above", "tokens"):
      out[name] = totals[name] + np.asarray(partial[name], totals[name].dtype)
    elif field == "value":
      k = totals[name].shape[-1]
      value = np.concatenate([totals[name], partial[name]], -1)
      sample = np.concatenate([totals[f"sample/{m}"], partial[f"sample/{m}"]], -1)
      position = np.concatenate([totals[f"position/{m}"], partial[f"position/{m}"]], -1)
      order = np.lexsort((position, sample, -value), axis=-1)[..., :k]
      out[name] = np.take_along_axis(value, order, -1)
      out[f"sample/{m}"] = np.take_along_axis(sample, order, -1).astype(np.int64)
      out[f"position/{m}"] = np.take_along_axis(position, order, -1).astype(np.int64)
  return out


def positions_within_sample(sample_of_token) -> np.ndarray:
  """int[...tokens] sample id of each token (-1 = none) -> int32[...tokens]: the token's rank
  among its sample's tokens in flattened (row-major) order; -1 where the sample is -1."""
  flat = np.asarray(sample_of_token).reshape(-1)
  out = np.full(flat.shape, -1, np.int32)
  for s in np.unique(flat[flat >= 0]):
    idx = np.flatnonzero(flat == s)
    out[idx] = np.arange(len(idx))
  return out.reshape(np.shape(sample_of_token))


def token_ids(model, prepared: dict, sample_ids) -> tuple[dict, dict]:
  """-> ({module: int32[...tokens] sample id}, {module: int32[...tokens] position}) for a
  prepared batch whose rows hold samples `sample_ids` int[B] (-1 = padding row). Every
  non-padding token counts (positions do not depend on the statistics' position scope)."""
  samples = model.token_groups(prepared, np.asarray(sample_ids, np.int32), False)
  return samples, {m: positions_within_sample(s) for m, s in samples.items()}


def _probe_forward(module, params, batch, probes):
  return forward(module, params, batch, probe=probes).probe


def host_partial(out: dict, targets: dict) -> dict:
  """Stacked probe results {module: {'value': [L, G, K, k], ...}} -> the store's per-neuron
  partial {'value/m': [S, G, k], ...}."""
  partial = {}
  for m, t in targets.items():
    r = {f: np.asarray(v) for f, v in out[m].items()}
    for f in ("value", "sample", "position", "above"):
      partial[f"{f}/{m}"] = r[f][t.layer, :, t.col]  # [S, G, ...]
    partial[f"value/{m}"] = partial[f"value/{m}"].astype(np.float64)
    partial[f"tokens/{m}"] = r["tokens"][0]
  return partial


@dataclasses.dataclass(frozen=True)
class RecordBatcher:
  """Batches of sample ids -> (prepared batch, {module: int32[...tokens] group}, int32[B] sample
  id per row, -1 = padding), for VQA records with one group per sample (MMNeuron domains).
  samples: [(record, group index)]; global sample id = position in this list."""
  model: object
  inputs: object
  samples: list
  prompt_fn: object
  load_image: object
  batch_size: int
  image_only: bool = False

  def record(self, i: int):
    return self.samples[i][0]

  def __call__(self, ids):
    recs = [self.samples[i][0] for i in ids]
    batch = self.inputs.pad(self.inputs([self.prompt_fn(r) for r in recs], [self.load_image(r) for r in recs]),
                            self.batch_size, 64)
    batch = self.model.prepare(batch)
    rows = np.full(self.batch_size, -1, np.int32)
    rows[:len(ids)] = [self.samples[i][1] for i in ids]
    sid = np.full(self.batch_size, -1, np.int32)
    sid[:len(ids)] = ids
    return batch, self.model.token_groups(batch, rows, self.image_only), sid


def make_step(model, params, batcher, targets: dict, num_groups: int, k: int, edges=EDGES) -> Step:
  """A `Step` over batches of sample ids (a tuple of ints): `prepare` builds the batch with
  `batcher` (its groups, sample ids and positions); `run` is the jitted forward with one TopKProbe
  per module and the host reduction to the store's partial."""
  fn = jax.jit(functools.partial(_probe_forward, model.module))
  cols = {m: jnp.asarray(t.cols) for m, t in targets.items()}
  edges = jnp.asarray(edges, jnp.float32)

  def prepare(ids):
    batch, groups, sid = batcher(ids)
    sample, position = token_ids(model, batch, sid)
    row_of = np.full(max(int(np.max(sid)) + 2, 1), -1, np.int32)
    row_of[sid[sid >= 0]] = np.arange(int((sid >= 0).sum()))
    probes = {m: TopKProbe(jnp.asarray(groups[m], jnp.int32), jnp.asarray(sample[m]), jnp.asarray(position[m]),
                           jnp.asarray(row_of[sample[m]]), cols[m], edges, num_groups, k, len(sid)) for m in targets}
    return model.device_batch(batch), probes, tuple(int(i) for i in ids)

  def run(prepared):
    batch, probes, ids = prepared
    out = fn(params, batch, probes)
    finite.check_partial({f"nonfinite/{m}": np.asarray(out[m]["nonfinite"]) for m in targets},
                         f"the atlas batch of samples {list(ids)}")
    return host_partial(out, targets)

  return Step(prepare, run)


def collect(store, batches, step: Step, commit_every: int = 10, prefetch: int = 2, desc: str = "atlas") -> dict:
  """Merge step(batch) over `batches` [(cursor_after, batch)] into the store; resumable (batches
  the store has counted are skipped, never prepared). Returns the totals."""
  spec = store.spec
  totals = store.totals() if store.generation is not None else empty_totals(spec)
  cursor, start = store.cursor, store.cursor
  todo = [(c, b) for c, b in batches if c > start]
  if start and todo and start not in {c for c, _ in batches} | {0}:
    raise ValueError(f"store {store.path} is at cursor {start}, which is no batch boundary of this plan")
  if start:
    logging.info("%s: resuming %s at cursor %d", desc, store.path, start)
  bar = Progress(batches[-1][0] if batches else 0, desc, unit="batches", initial=start)
  pending = 0
  try:
    work = prefetching.prefetch(todo, lambda item: step.prepare(item[1]), prefetch)
    for (cursor_after, _), prepared in work:
      partial = step.run(prepared)
      totals, cursor = merge(totals, {k: partial[k] for k in spec}), cursor_after
      pending += 1
      bar.set(cursor)
      if pending >= commit_every:
        store.commit(totals, cursor, {"atlas": {"version": VERSION}})
        pending = 0
  finally:
    if pending:
      store.commit(totals, cursor, {"atlas": {"version": VERSION}})
  if store.generation is None:
    store.commit(totals, cursor, {"atlas": {"version": VERSION}})
  bar.close()
  return totals
