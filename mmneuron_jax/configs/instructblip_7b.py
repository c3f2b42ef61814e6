"""MMNeuron on InstructBLIP (Salesforce/instructblip-vicuna-7b) with the paper's five datasets.

The checkpoint directory must hold HF's InstructBLIP layout (transformers >= 4.47: config.json with
image_token_index, safetensors, tokenizer files, qformer_tokenizer/, preprocessor_config.json).

COMMAND: python -m mmneuron_jax --config=instructblip_7b --workdir=runs/instructblip_7b \
  --config.model.path=/data/instructblip-vicuna-7b --config.data.path=/data/mmneuron
"""
from mmneuron_jax.configs import mmneuron_base


def instructblip_fields(c):
  """The InstructBLIP prompt: the authors' rewrite of the LLaVA prompt, no chat template
  ("<image>Question: ... Short Answer:"); the literal "<image>" stays text (faithful), or
  `model.image_text=drop` removes it."""
  c.eval.template = "plain"
  c.eval.style = "authors"
  c.model.image_text = "literal"
  return c


def get_config(arg=None):
  c = mmneuron_base.get_config()
  instructblip_fields(c)
  c.model.id = "Salesforce/instructblip-vicuna-7b"
  c.data.source = "paper"
  c.stats.vision_tokens_per_domain = 100_000  # 257 EVA tokens (256 patches + CLS) per image
  c.eval.n_per_domain = 1001
  return mmneuron_base.apply_arg(c, arg)
