"""What the MMNeuron pipeline needs to know about a model family, in one place.

A `PipelineFamily` holds the family's inputs builder (HF-named batches, the vision-encoder token
cost of an image for the stopping rule, batch padding) and its tiny demo checkpoint, both found by
name in the data layer, plus this study's knobs (`KNOBS`): deactivation conditions and evaluation
prompt format. The pipeline looks the family up by the checkpoint's `model_type` (or
`config.model.demo` for the embedded demo) and never branches on it.

Conditions (docs/ALGORITHMS.md), each evaluated on domain d with d's own neurons off in the listed modules:
- LLaVA-NeXT and LLaVA-OneVision: none, llm, vision (+ projector, as the authors' code), projector, all.
- InstructBLIP: none, llm, vision, qformer (text + query paths), vision+qformer, all.
"""
import dataclasses
from typing import Any, Callable

from mmneuron_jax.data import inputs as data_inputs, synthetic
from mmneuron_jax.data.inputs import prompts

LLAVA_NEXT_CONDITIONS = {
    "none": (),
    "llm": ("llm",),
    "vision": ("vision", "projector"),
    "projector": ("projector",),
    "all": ("llm", "vision", "projector"),
}
QFORMER = ("qformer_text", "qformer_query")
INSTRUCTBLIP_CONDITIONS = {
    "none": (),
    "llm": ("llm",),
    "vision": ("vision",),
    "qformer": QFORMER,
    "vision+qformer": ("vision",) + QFORMER,
    "all": ("llm", "vision") + QFORMER,
}


@dataclasses.dataclass(frozen=True)
class PipelineFamily:
  """name: the model registry's family (HF model_type); conditions: name -> probe modules switched off;
  template / style: default evaluation prompt (data/inputs/prompts.py); make_inputs(path, config) -> inputs builder; vision_tokens(hf
  config, (h, w)) -> vision-encoder tokens of one image; build_demo(path, texts, seed) -> path.
  make_inputs(path, run config, HF config dict) reads the tokenizer(s) and image processor at `path`.
  prompt_image_tokens: how many tokens the image counted for in the authors' `max_length` (HF's
  LLaVA-NeXT of their time kept one <image> token in input_ids; InstructBLIP's max_length counted
  the text tokens, the query tokens added on top)."""
  name: str
  conditions: dict
  template: str
  style: str
  make_inputs: Callable[[str, Any, dict], Any]
  vision_tokens: Callable[[dict, tuple], int]
  build_demo: Callable[..., str]
  prompt_image_tokens: int = 1

  def eval_prompt(self, record, eval_cfg) -> str:
    """`eval_cfg.template` / `eval_cfg.style` ('' = this family's default)."""
    template = eval_cfg.get("template") or self.template
    style = eval_cfg.get("style") or self.style
    return prompts.eval_prompt(record, template=template, style=style)

  @staticmethod
  def stats_prompt(record) -> str:
    """`"<image>\\n{question}"`, no template, for every family (the authors' `simple_flag` prompt)."""
    return prompts.stats_prompt(record)

  @staticmethod
  def lens_prompt(record, lens_cfg=None) -> str:
    """The logit-lens prompt: `lens_cfg.prompt` 'authors' (default) = the authors' full prompt with no
    chat template, `"<image>\n" + body` (their logit_len.py on load_bench.py's prompts); 'stats' =
    the statistics prompt."""
    kind = (lens_cfg.get("prompt") if lens_cfg is not None else None) or "authors"
    if kind == "stats":
      return prompts.stats_prompt(record)
    if kind != "authors":
      raise ValueError(f"config.lens.prompt={kind!r}; expected 'authors' or 'stats'")
    return prompts.eval_prompt(record, template="raw", style="authors")

  def vocabulary_texts(self, records, eval_cfg) -> list[str]:
    """Every text the run tokenizes (a demo checkpoint's word-level vocabulary is built from them)."""
    return [t for r in records for t in [r.question, *r.answers, self.stats_prompt(r), self.eval_prompt(r, eval_cfg),
                                         self.lens_prompt(r)]]


def _instructblip_inputs(config) -> dict:
  return {"image_text": config.model.get("image_text", "literal")}


@dataclasses.dataclass(frozen=True)
class Knobs:
  """The MMNeuron study's choices for one family: deactivation conditions, default evaluation prompt
  (template / style), `inputs_options(run config) -> kwargs` of its inputs builder and
  `prompt_image_tokens` (see `PipelineFamily`)."""
  conditions: dict
  template: str
  style: str
  inputs_options: Callable[[Any], dict] = lambda config: {}
  prompt_image_tokens: int = 1


KNOBS = {
    # The authors' prompt body ("Question: ...", options as a Python list, the driving role) in the
    # Vicuna v1 template (generate.py); `config.eval.style=llava` gives LLaVA's own format.
    "llava_next": Knobs(LLAVA_NEXT_CONDITIONS, "vicuna_v1", "authors", prompt_image_tokens=1),
    # The authors' generate.py rewrites the LLaVA prompt for BLIP: no chat template, "Short Answer:".
    "instructblip": Knobs(INSTRUCTBLIP_CONDITIONS, "plain", "authors", _instructblip_inputs, prompt_image_tokens=0),
    # LLaVA-NeXT's modules and conditions; the authors' prompt body in the Qwen2 ChatML turn of its chat template.
    "llava_onevision": Knobs(LLAVA_NEXT_CONDITIONS, "qwen_chatml", "authors", prompt_image_tokens=1),
}


def family(name: str, where: str = "model_type") -> PipelineFamily:
  """The MMNeuron view of a model family: this study's knobs plus the family's inputs builder
  (`data/inputs/<name>.py`) and demo-checkpoint writer (`data/synthetic/demo_<name>.py`)."""
  if name not in KNOBS:
    raise ValueError(f"{where}={name!r}: the MMNeuron pipeline supports {sorted(KNOBS)}")
  knobs, inputs = KNOBS[name], data_inputs.family(name)

  def make_inputs(path, config, hf_config):
    return inputs.Inputs.from_pretrained(path, hf_config=hf_config, **knobs.inputs_options(config))

  return PipelineFamily(name, knobs.conditions, knobs.template, knobs.style, make_inputs, inputs.vision_tokens,
                        synthetic.demo_writer(name).build_demo_checkpoint, knobs.prompt_image_tokens)
