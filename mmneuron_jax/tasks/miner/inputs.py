"""MINER model inputs, one builder per model family: chat prompt, batches, token-id sets, demo model.

`family_inputs(family, path, config)` returns a `ChatInputs` whose calls are the same for every
family, so the MINER task switches model with one config field (`model.family`):

  inputs.batch(samples, padding_side)            -> HF-named numpy batch (prefill / generation)
  inputs.answer_batch(samples, answers)          -> (batch of prompt + answer, bool[B, T] answer mask)
  inputs.token_ids()                             -> {'special', 'image', 'video', 'audio': ids} (stage 1)
  inputs.decode(int[B, N])                       -> [str]

The family's chat facts (markers, special tokens, what it takes) are the `CHAT` spec of its
`data/inputs/<family>.py`. Token ids come from the checkpoint's own tokenizer and config (a demo
checkpoint may remap them); the real tokenizers' ids are the family module's `TOKEN_IDS`.
"""
import numpy as np

from mmneuron_jax.data import inputs as data_inputs, synthetic
from mmneuron_jax.data.inputs.batching import pad_2d
from mmneuron_jax.data.inputs.chat import VIDEO_MARKER, ChatSpec
from mmneuron_jax.data.sources.media import resample
from mmneuron_jax.data.sources.miner_samples import audios_of, images_of, videos_of

SYSTEM = "You are a helpful assistant."


def spec_for(family: str) -> ChatSpec:
  """The family's chat spec: `CHAT` of its `data/inputs/<family>.py`."""
  chat = _inputs_module(family).CHAT
  if chat is None:
    raise ValueError(f"config.model.family={family!r}; MINER supports the families whose data/inputs/<family>.py "
                     "declares a CHAT spec (e.g. qwen2_vl, qwen2_5_vl, qwen2_audio)")
  return chat


def _inputs_module(family: str):
  try:
    return data_inputs.family(family)
  except ModuleNotFoundError as e:
    raise ValueError(f"config.model.family={family!r}: no data/inputs/{family}.py ({e})") from e


def demo_builder(family: str):
  """-> build_demo_checkpoint(path, texts, seed=...) of the family's tiny demo model
  (`data/synthetic/demo_<family>.py`)."""
  spec_for(family)
  return synthetic.demo_writer(family).build_demo_checkpoint


def bucket_length(t: int, bucket: int) -> int:
  """The smallest bucket * 2**k >= t: few distinct lengths (compilations), at most 2x padding."""
  width = max(1, int(bucket))
  while width < t:
    width *= 2
  return width


def pad_to(batch: dict, rows: int | None, bucket: int, pad_id: int, padding_side: str = "right",
           extra: dict | None = None) -> tuple:
  """Pad every int[B, T] field (input_ids, attention_mask, mm_token_type_ids; and `extra` bool[B, T]
  arrays) to [rows, bucket_length(T, bucket)]; padding is attention_mask 0. -> (batch, extra)."""
  ids = np.asarray(batch["input_ids"])
  b, t = ids.shape
  rows = b if rows is None else rows
  if rows < b:
    raise ValueError(f"pad_to: batch has {b} rows, more than rows={rows}")
  width = bucket_length(t, bucket)
  fill = {"input_ids": pad_id}
  pad = lambda a, value: pad_2d(a, rows, width, value, padding_side == "left")

  out = dict(batch)
  for key in ("input_ids", "attention_mask", "mm_token_type_ids"):
    if key in batch and batch[key] is not None:
      out[key] = pad(batch[key], fill.get(key, 0))
  return out, {k: pad(v, False) for k, v in (extra or {}).items()}


class ChatInputs:
  """Samples -> HF-named batches for one family, with the family's chat template."""

  def __init__(self, spec: ChatSpec, processor, config: dict, generation_config: dict | None = None):
    self.spec = spec
    self.processor = processor
    self.tokenizer = processor.tokenizer
    self.config = config
    self.generation_config = generation_config or {}
    self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
    self.im_end_id = self._token_id("<|im_end|>")

  @classmethod
  def from_pretrained(cls, family: str, path: str, options: dict | None = None):
    """options: values of the family's `spec.options` (others are ignored)."""
    spec = spec_for(family)
    kwargs = dict(spec.processor_kwargs)
    kwargs.update({k: v for k, v in (options or {}).items() if k in spec.options})
    processor = _inputs_module(family).Inputs.from_pretrained(path, **kwargs)
    return cls(spec, processor, _read_config(path), _read_config(path, "generation_config.json", missing_ok=True))

  def settings(self) -> dict:
    """The processor settings in effect (e.g. Qwen2-VL pixel bounds), for the run's protocol record."""
    return dict(self.processor.settings()) if hasattr(self.processor, "settings") else {}

  def _token_id(self, token: str) -> int:
    tid = self.tokenizer.convert_tokens_to_ids(token)
    if tid is None or tid == self.tokenizer.unk_token_id:
      raise ValueError(f"the tokenizer of this {self.spec.name} checkpoint has no token {token!r}")
    return int(tid)

  def token_ids(self) -> dict:
    """Stage-1 id sets {'special', 'image', 'video', 'audio': tuple of ids}."""
    text_cfg = self.config.get("text_config") or {}
    out = {"special": tuple(self._token_id(t) for t in self.spec.special_tokens), "image": (), "video": (),
           "audio": ()}
    for modality, key in self.spec.content_ids.items():
      tid = self.config.get(key, text_cfg.get(key))
      if tid is None:
        raise ValueError(f"config.json of this {self.spec.name} checkpoint has no {key!r}")
      out[modality] = (int(tid),)
    return out

  def eos_ids(self) -> list:
    """config.json's eos id(s), generation_config.json's (HF generate stops on those: Qwen2-VL / Qwen2-Audio
    add <|endoftext|>) and <|im_end|>."""
    eos = (self.config.get("text_config") or self.config).get("eos_token_id", self.config.get("eos_token_id"))
    ids = [] if eos is None else list(np.atleast_1d(eos).tolist())
    more = self.generation_config.get("eos_token_id")
    ids += [] if more is None else list(np.atleast_1d(more).tolist())
    return sorted(set(ids + [self.im_end_id]))

  def media(self, sample) -> list:
    """PIL images, or float32[S] waveforms resampled to the feature extractor's rate."""
    if self.spec.media == "image":
      return images_of(sample)
    rate = getattr(getattr(self.processor, "extractor", None), "sampling_rate", sample.sampling_rate)
    if rate == sample.sampling_rate:
      return audios_of(sample)
    return [resample(a, sample.sampling_rate, rate) for a in audios_of(sample)]

  def prompt(self, sample) -> str:
    """The chat text of one sample: system turn, user turn (media markers placed: images, then
    videos, then the text, as HF's chat template), assistant header."""
    marker = self.spec.marker
    text = sample.prompt
    if sample.videos and VIDEO_MARKER not in text:
      text = VIDEO_MARKER * len(sample.videos) + text
    n = len(sample.images if self.spec.media == "image" else sample.audios)
    if n and marker not in text:
      text = "".join(self.spec.media_prefix.format(i=i + 1) + marker + self.spec.media_suffix for i in range(n)) + text
    return (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{text}<|im_end|>\n"
            f"<|im_start|>assistant\n")

  def contents(self, samples) -> dict:
    """The processor's media arguments for `samples`: {'media': images / audios per sample,
    'videos': frames per sample (only for families that take video)}."""
    out = {"media": [self.media(s) for s in samples]}
    if "video" in self.spec.takes:
      out["videos"] = [videos_of(s) for s in samples]
    return out

  def _process(self, prompts, contents, padding_side: str) -> dict:
    extra = {"videos": contents["videos"]} if "videos" in contents else {}
    return self.processor(prompts, contents["media"], padding_side=padding_side, **extra)

  def batch(self, samples, padding_side: str = "right") -> dict:
    """Prompts of `samples` -> HF-named numpy batch (right padding for prefill, left for generation)."""
    return self._process([self.prompt(s) for s in samples], self.contents(samples), padding_side)

  def answer_batch(self, samples, answers) -> tuple:
    """Prompt + answer + <|im_end|> per sample (right padded) -> (batch, answer_mask bool[B, T]) marking
    the answer and <|im_end|> tokens (the teacher-forced targets)."""
    prompts = [self.prompt(s) for s in samples]
    contents = self.contents(samples)
    head = self._process(prompts, contents, "right")
    full = self._process([p + a + "<|im_end|>" for p, a in zip(prompts, answers)], contents, "right")
    n_head, n_full = head["attention_mask"].sum(1), full["attention_mask"].sum(1)
    for b, (h, f) in enumerate(zip(n_head, n_full)):
      if f <= h or not np.array_equal(full["input_ids"][b, :h], head["input_ids"][b, :h]):
        raise ValueError(f"sample {samples[b].id}: the prompt's tokens are not a prefix of prompt + answer "
                         f"({answers[b]!r}); cannot mark the answer tokens")
    t = np.arange(full["input_ids"].shape[1])[None]
    return full, (t >= n_head[:, None]) & (t < n_full[:, None])

  def decode(self, token_ids) -> list:
    return self.processor.decode(token_ids)


def _read_config(path: str, name: str = "config.json", missing_ok: bool = False) -> dict | None:
  import json
  import os
  file = os.path.join(path, name)
  if missing_ok and not os.path.exists(file):
    return None
  with open(file) as f:
    return json.load(f)


def family_inputs(family: str, path: str, options: dict | None = None) -> ChatInputs:
  return ChatInputs.from_pretrained(family, path, options)
