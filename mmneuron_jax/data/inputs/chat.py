"""`ChatSpec`: how a family's chat-template inputs are built (MINER's prompts), declared as `CHAT` in
its `data/inputs/<family>.py`."""
import dataclasses

IMAGE_MARKER = "<image>"  # where a sample's media go in its prompt
VIDEO_MARKER = "<video>"
AUDIO_MARKER = "<audio>"


@dataclasses.dataclass(frozen=True)
class ChatSpec:
  """name: the family; media: its main content modality ('image' / 'audio'); marker: its prompt
  marker; special_tokens: token strings of MINER's `special` set; content_ids: modality -> config
  key of its placeholder id; takes: every content modality its inputs take (samples with another
  one are skipped; 'video' samples pass `videos=` to the processor); processor_kwargs: (name, value)
  pairs for its `Inputs.from_pretrained`; media_prefix: text before the i-th medium in the user turn
  (HF chat template), media_suffix after; modalities: MINER modalities its inputs can produce
  (stage-2 arrays keep only these); options: `config.data` fields its processor takes (passed to
  its `Inputs.from_pretrained` by name)."""
  name: str
  media: str
  marker: str
  special_tokens: tuple
  content_ids: dict
  takes: tuple = ()
  processor_kwargs: tuple = ()
  media_prefix: str = ""
  media_suffix: str = ""
  modalities: tuple = ("text", "special", "special_text", "prompt")
  options: tuple = ()
