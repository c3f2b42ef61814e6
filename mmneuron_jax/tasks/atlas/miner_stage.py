"""The optional 'atlas' stage of the MINER study (tasks/miner.py): groups are the selected set's
modalities, a token's group is its modality (stage-1 token masks), samples are every dataset's
samples in order. No switch-off effect here: a modality is not a set of held-out answers.
Qwen2-VL / Qwen2-Audio tokens are not mapped back to patches or frames (examples show the
neuron's values as a strip over the sequence and the text tokens shaded)."""
import dataclasses

import numpy as np

from mmneuron_jax.analysis import miner
from mmneuron_jax.data.inputs.batching import chunks
from mmneuron_jax.tasks.atlas.build import atlas_from_batches, options_from_config
from mmneuron_jax.tasks.miner.inputs import pad_to


@dataclasses.dataclass(frozen=True)
class MinerBatcher:
  """Sample ids -> (prepared batch, {'llm': int32[B, T] modality group}, int32[B] sample ids)."""
  model: object
  inputs: object
  samples: list
  group_names: tuple
  ids: dict
  batch_size: int
  length_bucket: int

  def record(self, i: int):
    return self.samples[i]

  def __call__(self, sample_ids):
    chunk = [self.samples[i] for i in sample_ids]
    batch, _ = pad_to(self.inputs.batch(chunk, "right"), self.batch_size, self.length_bucket, self.inputs.pad_id)
    batch = self.model.prepare(batch)
    am = np.asarray(batch["attention_mask"]) != 0
    masks = np.asarray(miner.token_modality_masks(
        np.asarray(batch["input_ids"]), None, am, special_ids=self.ids["special"], image_ids=self.ids["image"],
        video_ids=self.ids["video"], audio_ids=self.ids["audio"]))  # [7, B, T]
    groups = np.full(am.shape, -1, np.int32)
    for g, name in enumerate(self.group_names):
      groups = np.where((groups < 0) & masks[miner.MODALITY_INDEX[name]], g, groups)
    sid = np.full(self.batch_size, -1, np.int32)
    sid[:len(sample_ids)] = sample_ids
    groups[len(sample_ids):] = -1
    return batch, {"llm": groups}, sid


def stage(config, workdir, model, params, inputs, samples_by_dataset: dict, neuron_set, ids, model_id) -> str:
  """The atlas of the chosen MINER set over all datasets' samples -> atlas/index.html."""
  opts = options_from_config(config, config.scores.batch_size, False)
  n = (config.get("atlas", {}) or {}).get("max_samples_per_domain", 0) or None
  samples = [s for v in samples_by_dataset.values() for s in v[:n]]
  names = tuple(neuron_set.group_names)
  batcher = MinerBatcher(model, inputs, samples, names, ids, opts.batch_size, config.scores.length_bucket)
  plan = [tuple(c) for c in chunks(list(range(len(samples))), opts.batch_size)]
  return atlas_from_batches(model, params, inputs, workdir, {"llm": neuron_set}, list(names), batcher, plan,
                                  [str(s.id) for s in samples], opts, model_id, None,
                                  f"MINER {neuron_set.meta.get('strategy', '')} (neurons/llm.json)")
