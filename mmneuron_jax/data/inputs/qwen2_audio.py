"""Qwen2-Audio model inputs from raw 16 kHz waveforms, as HF's `Qwen2AudioProcessor` builds them.

Waveforms go through `transformers.WhisperFeatureExtractor` padded to the full chunk
(`padding='max_length'`, with its attention mask), giving `input_features` float32[N, M, 2P]
and `feature_attention_mask` int32[N, 2P] (one row per audio, audios in prompt order). Each
`<|AUDIO|>` placeholder in the token ids is expanded to HF's count of output frames,
(((f - 1) // 2 + 1) - 2) // 2 + 1 with f = the audio's valid mel frames.
"""
import numpy as np

from mmneuron_jax.data.inputs import token_rows
from mmneuron_jax.data.inputs.batching import pad_rows
from mmneuron_jax.data.inputs.chat import AUDIO_MARKER, ChatSpec
from mmneuron_jax.models.whisper_audio import encoder_lengths

AUDIO_TOKEN, AUDIO_BOS, AUDIO_EOS = "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"


def num_audio_tokens(frames) -> np.ndarray:
  """Valid mel frames int[N] (feature_attention_mask.sum(-1)) -> audio tokens int64[N]."""
  return encoder_lengths(np.asarray(frames, np.int64))[1]


def build_batch(rows, input_features, feature_attention_mask, config: dict, padding_side: str = "right",
                pad_id: int = 0) -> dict:
  """Rows of token ids holding one `<|AUDIO|>` id per audio (audios in row order) + the feature
  extractor outputs -> the HF model's inputs (numpy): {'input_ids', 'attention_mask'} +
  {'input_features', 'feature_attention_mask'} when there are audios."""
  audio_id = config.get("audio_token_index", config.get("audio_token_id", 151646))
  fam = np.zeros((0, 0), np.int32) if feature_attention_mask is None else np.asarray(feature_attention_mask)
  counts = num_audio_tokens(fam.sum(-1)) if len(fam) else np.zeros(0, np.int64)
  expanded = token_rows.expand_rows(rows, counts, audio_id, "audio", "feature_attention_mask")
  ids, mask = pad_rows(expanded, pad_id, padding_side)
  batch = {"input_ids": ids, "attention_mask": mask}
  if len(counts):
    batch.update(input_features=np.asarray(input_features, np.float32), feature_attention_mask=fam)
  return batch


def feature_extractor(**kwargs):
  """HF's WhisperFeatureExtractor with Qwen2-Audio's settings (128 mel bins, 30 s chunks) unless
  overridden (e.g. `chunk_length=1` for a tiny encoder with max_source_positions=50)."""
  import transformers
  return transformers.WhisperFeatureExtractor(**{"feature_size": 128, **kwargs})


def extract_features(extractor, audios) -> dict:
  """Waveforms (float arrays at the extractor's rate) -> {'input_features' float32[N, M, F],
  'feature_attention_mask' int32[N, F]}, the processor's call (padded to the full chunk)."""
  out = extractor([np.asarray(a, np.float32) for a in audios], sampling_rate=extractor.sampling_rate,
                  return_attention_mask=True, padding="max_length", return_tensors="np")
  return {"input_features": np.asarray(out["input_features"], np.float32),
          "feature_attention_mask": np.asarray(out["attention_mask"])}


class Qwen2AudioInputs:
  """Prompts + waveforms -> HF-named model inputs (numpy).

  A prompt marks each audio with `<audio>` (becomes `<|audio_bos|><|AUDIO|><|audio_eos|>`) or with
  the `<|AUDIO|>` token itself; `audios[i]` lists prompt i's waveforms (or is one waveform).
  """

  def __init__(self, tokenizer, extractor, config: dict):
    self.tokenizer = tokenizer
    self.extractor = extractor
    self.config = config
    self.audio_token_id = config.get("audio_token_index", config.get("audio_token_id", 151646))
    self.audio_token = tokenizer.convert_ids_to_tokens(self.audio_token_id)

  @classmethod
  def from_pretrained(cls, path: str):
    import json
    import os

    import transformers
    with open(os.path.join(path, "config.json")) as f:
      config = json.load(f)
    return cls(transformers.AutoTokenizer.from_pretrained(path),
               transformers.WhisperFeatureExtractor.from_pretrained(path), config)

  def __call__(self, prompts, audios, padding_side="right"):
    if len(prompts) != len(audios):
      raise ValueError(f"{len(prompts)} prompts but {len(audios)} audio lists")
    per_row = [list(a) if isinstance(a, (list, tuple)) else ([] if a is None else [a]) for a in audios]
    flat = [a for row in per_row for a in row]
    feats = extract_features(self.extractor, flat) if flat else {"input_features": None,
                                                                 "feature_attention_mask": None}
    rows = []
    for prompt, row_audios in zip(prompts, per_row):
      text = prompt.replace("<audio>", AUDIO_BOS + self.audio_token + AUDIO_EOS)
      if text.count(self.audio_token) != len(row_audios):
        raise ValueError(f"prompt has {text.count(self.audio_token)} audio markers but {len(row_audios)} audios: "
                         f"{prompt!r}")
      rows.append(self.tokenizer(text)["input_ids"])
    return build_batch(rows, feats["input_features"], feats["feature_attention_mask"], self.config, padding_side,
                       token_rows.pad_id(self.tokenizer))

  def decode(self, token_ids) -> list[str]:
    return token_rows.decode(self.tokenizer, token_ids)


# -- the data checklist (data/inputs/__init__.py CHECKLIST) ----------------------------------------
Inputs = Qwen2AudioInputs
vision_tokens = None  # no MMNeuron stopping-rule cost for this family
CHAT = ChatSpec(
    "qwen2_audio", "audio", AUDIO_MARKER, ("<|im_start|>", "<|im_end|>", "<|audio_bos|>", "<|audio_eos|>"),
    {"audio": "audio_token_index"}, takes=("audio",), media_prefix="Audio {i}: ", media_suffix="\n",
    modalities=("text", "special", "special_text", "audio", "prompt"))
