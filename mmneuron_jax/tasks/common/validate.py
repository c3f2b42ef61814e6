"""Every field of a task's config checked before any data or model work; all problems at once.

`check(config)` raises one `UserError` listing each problem (field, value, what is expected), so a
bad option is refused in a second instead of after hours of statistics, and never runs as
something else (a mistyped enum is not read as the default).
"""
import os

from mmneuron_jax.errors import problems_error
from mmneuron_jax.data.inputs import prompts
from mmneuron_jax.tasks.common import families
from mmneuron_jax.data.synthetic import skills
from mmneuron_jax.analysis import miner
from mmneuron_jax.tasks.miner import scores as miner_scores
from mmneuron_jax.tasks.miner import inputs as miner_inputs
from mmneuron_jax.tasks.miner import studies
from mmneuron_jax import tasks

DTYPES = ("float32", "bfloat16", "float16")
ATTENTION = ("xla", "cudnn", "fused")
FP32_MATMUL = ("highest", "bf16_3x", "bf16_6x", "bf16_9x")
MMNEURON_STAGES = ("stats", "select", "eval", "lens", "tuned_lens", "atlas")


class Checker:
  """Collects problems; each check names the dotted field."""

  def __init__(self, config):
    self.config, self.problems = config, []

  def get(self, field):
    node = self.config
    for part in field.split("."):
      try:
        node = node[part]
      except (KeyError, AttributeError, TypeError):
        return _MISSING
    return node

  def add(self, field, value, expected):
    self.problems.append(f"config.{field}={value!r}: expected {expected}")

  def one_of(self, field, choices, optional=False):
    v = self.get(field)
    if v is _MISSING or (optional and v in ("", None)):
      return
    if v not in choices:
      self.add(field, v, f"one of {list(choices)}")

  def number(self, field, lo=None, hi=None, lo_open=False, integer=False):
    v = self.get(field)
    if v is _MISSING:
      return
    ok_type = isinstance(v, int) if integer else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok_type:
      self.add(field, v, "an integer" if integer else "a number")
      return
    bad = (lo is not None and (v <= lo if lo_open else v < lo)) or (hi is not None and v > hi)
    if bad:
      low = "" if lo is None else f"{'>' if lo_open else '>='} {lo}"
      high = "" if hi is None else f"<= {hi}"
      self.add(field, v, " and ".join(x for x in (low, high) if x))

  def boolean(self, field):
    v = self.get(field)
    if v is not _MISSING and not isinstance(v, bool):
      self.add(field, v, "True or False")

  def names(self, field, allowed=None, min_len=0, unique=True):
    """A tuple/list of non-empty strings (a bare string is refused: it is not a list of names)."""
    v = self.get(field)
    if v is _MISSING:
      return
    if isinstance(v, str) or not isinstance(v, (list, tuple)) or not all(isinstance(x, str) and x for x in v):
      self.add(field, v, "a tuple of names, e.g. ('a', 'b')")
      return
    if len(v) < min_len:
      self.add(field, v, f"at least {min_len} names")
    if unique and len(set(v)) != len(v):
      self.add(field, v, "distinct names")
    if allowed is not None:
      unknown = [x for x in v if x not in allowed]
      if unknown:
        self.add(field, v, f"names from {list(allowed)} (unknown: {unknown})")

  def path(self, field, when=True):
    v = self.get(field)
    if when and v is not _MISSING and (not v or not os.path.exists(v)):
      self.add(field, v, "an existing path" if v else "a path (it is empty)")


_MISSING = object()


def _model(ch: Checker):
  ch.one_of("model.dtype", DTYPES + (("auto",) if ch.config.task == "miner" else ()))
  ch.one_of("model.compute_dtype", DTYPES, optional=True)
  ch.one_of("model.attention", ATTENTION)
  ch.one_of("model.fp32_matmul", FP32_MATMUL)
  ch.number("model.seed", integer=True)
  ch.path("model.path", when=bool(ch.get("model.path")))
  ch.boolean("overwrite")
  ch.boolean("model.check_weights")


def check_mmneuron(ch: Checker):
  _model(ch)
  if not ch.get("model.path"):
    demo = ch.get("model.demo")
    try:
      families.family(demo, "config.model.demo")
    except (ValueError, KeyError, ImportError) as e:
      ch.problems.append(f"config.model.demo={demo!r}: {e}")
  ch.names("stages", MMNEURON_STAGES)
  ch.one_of("data.source", ("demo", "skills", "records", "paper"))
  ch.one_of("model.demo_weights", ("random", "trained"))
  ch.path("data.path", when=ch.get("data.source") in ("records", "paper") and "{split}" not in str(ch.get("data.path")))
  ch.one_of("data.order", ("authors", "sha256"))
  ch.number("data.n_per_domain", lo=0, integer=True)
  ch.names("data.domains", min_len=2)
  if ch.get("data.source") == "skills":  # a synthetic source: its domains are fixed
    domains = ch.get("data.domains")
    unknown = [d for d in domains if d not in skills.DOMAINS] if isinstance(domains, (list, tuple)) else []
    if unknown:
      ch.add("data.domains", domains, f"domains of data.source='skills' {list(skills.DOMAINS)} (unknown: {unknown})")
  domains = ch.get("data.domains")
  if isinstance(domains, (list, tuple)) and len(domains) == 1:
    ch.problems[-1] += (" (domain-specific neurons compare domains: the entropy over a single domain is "
                        "always 0, so no neuron can be selected)")
  ch.one_of("stats.positions", ("all", "image"))
  ch.number("stats.max_samples_per_domain", lo=0, integer=True)
  ch.number("stats.vision_tokens_per_domain", lo=0, integer=True)
  ch.number("stats.batch_size", lo=0, lo_open=True, integer=True)
  ch.number("stats.commit_every", lo=1, integer=True)
  ch.number("stats.prefetch", lo=0, integer=True)
  ch.number("dape.top_rate", lo=0, hi=1, lo_open=True)
  ch.number("dape.filter_rate", lo=0, hi=1)
  ch.number("dape.bar_ratio", lo=0, hi=1)
  ch.number("eval.n_per_domain", lo=0, integer=True)
  ch.number("eval.batch_size", lo=0, lo_open=True, integer=True)
  ch.number("eval.max_new_tokens", lo=0, integer=True)  # 0: the authors' max_length budget
  ch.number("eval.temperature", lo=0)
  ch.one_of("eval.template", prompts.TEMPLATES)
  ch.one_of("eval.style", prompts.STYLES, optional=True)
  ch.number("eval.max_length", lo=1, integer=True)
  ch.one_of("eval.metric", ("authors", "standard"))
  for stage in ("stats", "eval", "lens"):
    ch.one_of(f"{stage}.split", ("train", "val", "test"))
  ch.number("lens.n_per_domain", lo=0, integer=True)
  ch.number("lens.top_k", lo=1, integer=True)
  ch.one_of("lens.prompt", ("authors", "stats"))
  ch.one_of("lens.positions", ("all", "image"))
  for field in ("n_per_domain", "positions_per_sample", "steps", "batch_size", "top_k"):
    ch.number(f"tuned_lens.{field}", lo=0, lo_open=True, integer=True)
  ch.number("tuned_lens.lr", lo=0, lo_open=True)
  ch.number("tuned_lens.heldout_frac", lo=0, hi=1, lo_open=True)


def check_miner(ch: Checker):
  _model(ch)
  family = ch.get("model.family")
  try:
    miner_inputs.spec_for(family)
  except (KeyError, ValueError, ImportError, AttributeError) as e:
    ch.problems.append(f"config.model.family={family!r}: {e}")
  ch.names("stages", studies.STAGES)
  ch.one_of("data.source", ("demo", "skills", "benchmarks"))
  ch.one_of("data.split", ("train", "val"), optional=True)
  ch.one_of("model.demo_weights", ("random", "trained"), optional=True)
  ch.names("data.datasets", min_len=1)
  ch.number("data.n_per_dataset", lo=0, integer=True)
  ch.number("data.min_pixels", lo=0, integer=True)
  ch.number("data.max_pixels", lo=0, integer=True)
  ch.one_of("data.video_frames", ("authors", "once"))
  ch.number("scores.batch_size", lo=0, lo_open=True, integer=True)
  ch.number("scores.length_bucket", lo=0, lo_open=True, integer=True)
  ch.number("scores.commit_every", lo=1, integer=True)
  ch.number("scores.flat_rtol", lo=0)
  ch.boolean("scores.grad")
  ch.number("scores.prefetch", lo=0, integer=True)
  ch.one_of("select.split", tuple(miner.MODALITY_SPLITS))
  weights = ch.get("select.weights")
  if weights is not _MISSING:
    try:
      miner_scores.parse_weights(weights)
    except (ValueError, TypeError) as e:
      ch.problems.append(f"config.select.weights={weights!r}: {e}")
  ch.number("select.grad_weight", lo=0)
  ch.one_of("select.strategy", miner.STRATEGIES)
  ch.number("select.ratio", lo=0, hi=1, lo_open=True)
  ch.number("select.seed", integer=True)
  ch.boolean("select.video")
  modalities = sorted({m for split in miner.MODALITY_SPLITS.values() for m in split})
  ch.names("deactivate.conditions", ("none", "all", "complement", "random", *modalities), min_len=1)
  ch.one_of("deactivate.value", ("zero", "min"))
  ch.number("deactivate.n_per_dataset", lo=0, integer=True)
  ch.number("deactivate.batch_size", lo=0, lo_open=True, integer=True)
  ch.number("deactivate.length_bucket", lo=0, lo_open=True, integer=True)
  ch.number("deactivate.max_new_tokens", lo=1, integer=True)
  ch.one_of("deactivate.generation", ("checkpoint", "config"))
  ch.number("deactivate.temperature", lo=0)
  ch.number("deactivate.top_k", lo=0, integer=True)
  ch.number("deactivate.top_p", lo=0, hi=1, lo_open=True)
  ch.number("deactivate.repetition_penalty", lo=0, lo_open=True)


CHECKS = {"mmneuron": check_mmneuron, "miner": check_miner}


def check(config) -> None:
  """Raise UserError listing every problem of config (tasks without a checker: only `task`)."""
  ch = Checker(config)
  task = ch.get("task")
  if task not in tasks.TASKS:
    ch.add("task", task, f"one of {sorted(tasks.TASKS)}")
  elif task in CHECKS:
    CHECKS[task](ch)
  if ch.problems:
    raise problems_error(f"the config has {len(ch.problems)} problem(s); nothing was run", ch.problems)
