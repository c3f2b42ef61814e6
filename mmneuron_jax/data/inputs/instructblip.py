"""InstructBLIP inputs named as HF's processor names them: `num_query_tokens` image tokens before the
text (HF's processor layout), the same prompt through the Q-Former tokenizer as `qformer_input_ids`.
Also the vision-encoder token cost of an image (the MMNeuron stopping rule) and batch padding.
"""
import os

import numpy as np

from mmneuron_jax.data.inputs.batching import pad_batch, pad_rows, round_up
from mmneuron_jax.data.inputs.common import IMAGE_PLACEHOLDER, decode, read_config


def vision_tokens(config: dict, size_hw=None) -> int:
  """InstructBLIP: EVA patches + CLS, whatever the image size (it is resized to image_size)."""
  v = config.get("vision_config") or {}
  return (v.get("image_size", 224) // v.get("patch_size", 14)) ** 2 + 1


class InstructBlipInputs:
  """prompts + PIL images -> {'input_ids', 'attention_mask' int64[B, Q + T], 'pixel_values'
  float32[B, 3, H, W], 'qformer_input_ids', 'qformer_attention_mask' int64[B, T_q]} (numpy).

  As HF's InstructBlipProcessor: each row is `num_query_tokens` image tokens followed by the
  tokenized prompt (BOS first); the Q-Former tokenizer reads the same prompt. Left padding puts
  the pad before the image tokens (HF: between them and BOS; positions come from the mask either way).

  A literal `<image>` in a prompt (the MMNeuron prompts are LLaVA's) is ordinary text, as it was for
  the authors' transformers, which had no `<image>` token for InstructBLIP: `image_text='literal'`
  (default) tokenizes it as text in both tokenizers, `'drop'` removes it (and a newline after it).
  """

  def __init__(self, tokenizer, qformer_tokenizer, image_processor, config: dict, image_text: str = "literal"):
    if image_text not in ("literal", "drop"):
      raise ValueError(f"image_text={image_text!r}; expected 'literal' or 'drop'")
    self.tokenizer = tokenizer
    self.qformer_tokenizer = qformer_tokenizer
    self.image_processor = image_processor
    self.config = config
    self.image_text = image_text
    self.num_query_tokens = int(config.get("num_query_tokens", 32))
    self.image_token_id = config.get("image_token_index", config.get("image_token_id"))
    if self.image_token_id is None:
      raise ValueError("config.json: image_token_index is missing (transformers >= 4.47 InstructBLIP layout)")
    self.qformer_max_len = int((config.get("qformer_config") or {}).get("max_position_embeddings", 512))

  @classmethod
  def from_pretrained(cls, path: str, image_text: str = "literal", hf_config: dict | None = None):
    """`path`: a HF InstructBLIP directory (tokenizer at the top, `qformer_tokenizer/`,
    preprocessor_config.json); `hf_config`: its config.json contents (default: read from `path`)."""
    import transformers
    qpath = os.path.join(path, "qformer_tokenizer")
    if not os.path.isdir(qpath):
      raise FileNotFoundError(f"{qpath}: missing; an InstructBLIP checkpoint keeps its Q-Former (BERT) tokenizer "
                              "there (HF InstructBlipProcessor.save_pretrained layout)")
    tok = transformers.AutoTokenizer.from_pretrained(path)
    qtok = transformers.AutoTokenizer.from_pretrained(qpath)
    try:
      proc = transformers.BlipImageProcessorPil.from_pretrained(path)
    except AttributeError:  # older transformers: the slow processor is the PIL one
      proc = transformers.BlipImageProcessor.from_pretrained(path)
    return cls(tok, qtok, proc, hf_config or read_config(path), image_text)

  def num_vision_tokens(self, size_hw=None) -> int:
    return vision_tokens(self.config, size_hw)

  def text(self, prompt: str) -> str:
    """The prompt as both tokenizers read it (see `image_text`)."""
    if prompt.count(IMAGE_PLACEHOLDER) > 1:
      raise ValueError(f"prompt holds more than one <image> (InstructBLIP takes one image): {prompt!r}")
    if self.image_text == "drop":
      prompt = prompt.replace(IMAGE_PLACEHOLDER + "\n", "").replace(IMAGE_PLACEHOLDER, "")
    return prompt

  def __call__(self, prompts, images, padding_side="right"):
    if len(prompts) != len(images):
      raise ValueError(f"{len(prompts)} prompts but {len(images)} images")
    texts = [self.text(p) for p in prompts]
    image_ids = [self.image_token_id] * self.num_query_tokens
    # split_special_tokens: a literal "<image>" must not become the (added) image token.
    rows = [image_ids + self.tokenizer(t, split_special_tokens=True)["input_ids"] for t in texts]
    qrows = [self.qformer_tokenizer(t, split_special_tokens=True)["input_ids"] for t in texts]
    for prompt, q in zip(prompts, qrows):
      if len(q) > self.qformer_max_len:
        raise ValueError(f"prompt has {len(q)} Q-Former tokens, more than qformer_config.max_position_embeddings="
                         f"{self.qformer_max_len}: {prompt[:80]!r}...")
    ids, mask = pad_rows(rows, self.pad_id, padding_side)
    qids, qmask = pad_rows(qrows, self.qformer_pad_id, "right")
    pix = self.image_processor([im.convert("RGB") for im in images], return_tensors="np")["pixel_values"]
    return {"input_ids": ids, "attention_mask": mask, "pixel_values": np.asarray(pix, np.float32),
            "qformer_input_ids": qids, "qformer_attention_mask": qmask}

  @property
  def pad_id(self) -> int:
    return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

  @property
  def qformer_pad_id(self) -> int:
    return self.qformer_tokenizer.pad_token_id if self.qformer_tokenizer.pad_token_id is not None else 0

  def pad(self, batch: dict, rows: int, length_multiple: int = 64, padding_side: str = "right",
          qformer_multiple: int = 32) -> dict:
    """Pad to `rows` rows and the lengths to multiples. Every model row needs its image, so an
    empty row gets image tokens, a zero image and one Q-Former token, all with attention mask 0
    except that Q-Former token (the caller gives empty rows group -1, so nothing of them counts)."""
    n = batch["input_ids"].shape[0]
    if rows < n:
      raise ValueError(f"pad: batch has {n} rows, more than rows={rows}")
    out = pad_batch(batch, n, length_multiple, None, self.pad_id, padding_side=padding_side)
    ids, am = out["input_ids"], out["attention_mask"]
    q = self.num_query_tokens
    new_ids = np.full((rows, ids.shape[1]), self.pad_id, ids.dtype)
    new_ids[:, :q] = self.image_token_id
    new_ids[:n] = ids
    new_am = np.zeros((rows, am.shape[1]), am.dtype)
    new_am[:n] = am
    qids, qmask = np.asarray(batch["qformer_input_ids"]), np.asarray(batch["qformer_attention_mask"])
    width = min(round_up(qids.shape[1], qformer_multiple), max(self.qformer_max_len, qids.shape[1]))
    new_qids = np.full((rows, width), self.qformer_pad_id, qids.dtype)
    new_qmask = np.zeros((rows, width), qmask.dtype)
    new_qids[:n, :qids.shape[1]], new_qmask[:n, :qids.shape[1]] = qids, qmask
    new_qmask[n:, 0] = 1
    pix = np.asarray(batch["pixel_values"])
    new_pix = np.zeros((rows,) + pix.shape[1:], pix.dtype)
    new_pix[:n] = pix
    return dict(out, input_ids=new_ids, attention_mask=new_am, qformer_input_ids=new_qids,
                qformer_attention_mask=new_qmask, pixel_values=new_pix)

  def decode(self, token_ids) -> list[str]:
    return decode(self.tokenizer, token_ids)


# -- the data checklist (data/inputs/__init__.py CHECKLIST) ----------------------------------------
Inputs = InstructBlipInputs
CHAT = None  # no MINER chat spec for this family
