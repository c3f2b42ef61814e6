"""Statistics and evaluation prompts (LLaVA Vicuna v1, plain InstructBLIP, the authors' text)."""
import pytest

from mmneuron_jax.data.inputs import prompts as P
from mmneuron_jax.data.sources.records import VQARecord

MED = VQARecord("m", "medical", "Which organ?", ["B"], choices=["Heart", "Liver", "Lung", "Brain"])
DOC = VQARecord("d", "documents", "What is the date?", ["1990"])
CAR = VQARecord("c", "auto-driving", "Why stop?", ["red light"])


def test_stats_prompt():
  assert P.stats_prompt(MED) == "<image>\nWhich organ?"  # no template, no choices
  assert P.stats_prompt(CAR) == "<image>\nWhy stop?"


def test_vicuna_v1_and_llava_v1():
  sys_user = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
              "helpful, detailed, and polite answers to the user's questions.")
  assert P.eval_prompt(DOC) == (f"{sys_user} USER: <image>\nWhat is the date?\n"
                                "Answer the question using a single word or phrase. ASSISTANT:")
  assert P.eval_prompt(MED) == (f"{sys_user} USER: <image>\nWhich organ?\nA. Heart\nB. Liver\nC. Lung\nD. Brain\n"
                                "Answer with the option's letter from the given choices directly. ASSISTANT:")
  human = P.eval_prompt(DOC, "llava_v1")
  assert human.startswith("A chat between a curious human") and "the human's questions. USER: <image>\n" in human
  # the driving role prompt goes before the question
  assert P.eval_prompt(CAR) == f"{sys_user} USER: <image>\n{P.DRIVING_ROLE}\nWhy stop? ASSISTANT:"


def test_plain_raw_and_authors_style():
  assert P.eval_prompt(DOC, "plain") == "What is the date?\nAnswer the question using a single word or phrase."
  assert P.eval_prompt(DOC, "raw") == "<image>\nWhat is the date?\nAnswer the question using a single word or phrase."
  assert P.eval_prompt(DOC, "raw", style="authors") == \
      "<image>\nQuestion: What is the date?\nAnswer the question using a single word or phrase."
  assert P.eval_prompt(DOC, "plain", style="authors") == "<image>Question: What is the date? Short Answer:"
  assert P.eval_body(MED, "authors") == ("Question: Which organ?\nContext: N/A\nOptions: ['A:Heart', 'B:Liver', "
                                         "'C:Lung', 'D:Brain']\n\nAnswer with the option's letter from the given "
                                         "choices directly.")
  assert P.eval_body(CAR, "authors") == f"Role: {P.DRIVING_ROLE} Question: Why stop?"
  other = VQARecord("x", "red", "Which hue?", ["A"], choices=["red", "blue"])
  assert P.instruction(other) == P.MULTIPLE_CHOICE and P.instruction(VQARecord("y", "red", "q")) == P.SHORT_ANSWER
  with pytest.raises(ValueError, match="template='chatml'"):
    P.eval_prompt(DOC, "chatml")
  with pytest.raises(ValueError, match="style='x'"):
    P.eval_prompt(DOC, style="x")
