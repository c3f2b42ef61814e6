"""Prompts for MMNeuron: the statistics prompt and the per-domain evaluation prompts.

Statistics: `"<image>\\n{question}"`, no chat template, no choices (the authors' `simple_flag`).
Evaluation: a body (question + the domain's instruction) inside a template:
- `vicuna_v1`: LLaVA's `conv_vicuna_v1`, the one the authors used for LLaVA-NeXT:
  `"{system} USER: <image>\\n{body} ASSISTANT:"` with the "curious user" system line.
- `llava_v1`: the same with LLaVA's `conv_llava_v1` "curious human" system line (the HF model card's).
- `qwen_chatml`: Qwen2's ChatML turn as LLaVA-OneVision's chat template writes it, no system turn:
  `"<|im_start|>user\\n<image>\\n{body}<|im_end|>\\n<|im_start|>assistant\\n"`.
- `raw`: `"<image>\\n{body}"` (no chat template).
- `plain`: the body alone (InstructBLIP: the image enters through the Q-Former, not a text token).
Body styles: `llava` renders choices as LLaVA's multiple-choice format ("A. ..." lines), puts the
driving role prompt before the question and other instructions after it; `authors` (the pipeline's
default for every family, tasks/common/families.py) reproduces the MMNeuron code's text (load_bench.py:
"Question: ...", "Context: N/A", the csv's option strings as a Python list, the "Role: ..." driving
prompt; for InstructBLIP generate.py's rewrite "<image>" + "... Short Answer:"). `eval_body` keeps
`llava` as its default argument.
"""
from mmneuron_jax.data.sources.records import VQARecord

STATS_TEMPLATE = "<image>\n{question}"
DRIVING_ROLE = (
    "You are an advanced AI assistant installed on the Ego vehicle, equipped with conversational analysis "
    "capabilities for discussing autonomous driving scenarios. The perspective presented is from the "
    "point-of-view of the Ego vehicle, where the camera is mounted. It's important to note that the Ego "
    "vehicle itself is not visible in the images provided.")
MULTIPLE_CHOICE = "Answer with the option's letter from the given choices directly."
SHORT_ANSWER = "Answer the question using a single word or phrase."
INSTRUCTIONS = {"auto-driving": DRIVING_ROLE, "medical": MULTIPLE_CHOICE, "remote-sensing": SHORT_ANSWER,
                "common-scenes": SHORT_ANSWER, "documents": SHORT_ANSWER}
ROLE_DOMAINS = ("auto-driving",)  # their instruction is a role: it goes before the question
SYSTEMS = {
    "vicuna_v1": ("A chat between a curious user and an artificial intelligence assistant. "
                  "The assistant gives helpful, detailed, and polite answers to the user's questions."),
    "llava_v1": ("A chat between a curious human and an artificial intelligence assistant. "
                 "The assistant gives helpful, detailed, and polite answers to the human's questions."),
}
TEMPLATES = ("vicuna_v1", "llava_v1", "qwen_chatml", "raw", "plain")
STYLES = ("llava", "authors")
LETTERS = "ABCDEFGH"


def stats_prompt(record: VQARecord) -> str:
  """`"<image>\\n{question}"`: the prompt domain statistics are collected on."""
  return STATS_TEMPLATE.format(question=record.question)


def instruction(record: VQARecord) -> str:
  """The domain's instruction; unknown domains get the multiple-choice or short-answer one."""
  if record.domain in INSTRUCTIONS:
    return INSTRUCTIONS[record.domain]
  return MULTIPLE_CHOICE if record.choices else SHORT_ANSWER


def render_question(record: VQARecord) -> str:
  """The question, followed by one "A. option" line per choice (LLaVA's multiple-choice format)."""
  lines = [record.question] + [f"{LETTERS[i]}. {c}" for i, c in enumerate(record.choices or ())]
  return "\n".join(lines)


def _authors_body(record: VQARecord) -> str:
  if record.domain in ROLE_DOMAINS:
    return f"Role: {DRIVING_ROLE} Question: {record.question}"
  if record.choices:  # the authors print the csv's choice strings as a Python list
    options = list(record.meta.get("choices_raw") or [f"{LETTERS[i]}:{c}" for i, c in enumerate(record.choices)])
    return f"Question: {record.question}\nContext: N/A\nOptions: {options}\n\n{MULTIPLE_CHOICE}"
  return f"Question: {record.question}\n{instruction(record)}"


def eval_body(record: VQARecord, style: str = "llava") -> str:
  """Question (with choices) and instruction, without the image placeholder or chat template."""
  if style == "authors":
    return _authors_body(record)
  if style != "llava":
    raise ValueError(f"style={style!r}; expected one of {STYLES}")
  question, instr = render_question(record), instruction(record)
  return f"{instr}\n{question}" if record.domain in ROLE_DOMAINS else f"{question}\n{instr}"


def eval_prompt(record: VQARecord, template: str = "vicuna_v1", style: str = "llava") -> str:
  """The full evaluation prompt for `template` in TEMPLATES (see the module docstring)."""
  body = eval_body(record, style)
  if template in SYSTEMS:
    return f"{SYSTEMS[template]} USER: <image>\n{body} ASSISTANT:"
  if template == "qwen_chatml":
    return f"<|im_start|>user\n<image>\n{body}<|im_end|>\n<|im_start|>assistant\n"
  if template == "raw":
    return f"<image>\n{body}"
  if template == "plain":
    if style == "authors":  # generate.py's InstructBLIP rewrite of the LLaVA prompt
      body = body.replace("Context: N/A", "").replace(f"\n{SHORT_ANSWER}", " Short Answer:")
      return "<image>" + body
    return body
  raise ValueError(f"template={template!r}; expected one of {TEMPLATES}")
