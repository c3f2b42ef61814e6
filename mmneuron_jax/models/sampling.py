"""HF `generate` decoding settings on JAX logits: repetition penalty, temperature, top-k, top-p.

The order and maths are HF's logits-processor list (transformers 4.45-4.47 `_get_logits_processor`
then its warpers): the repetition penalty first (applied in greedy decoding too), then, only when
sampling, temperature, top-k and top-p; greedy = argmax of the processed logits, sampling = a draw
from softmax(processed logits).

  repetition penalty p (!= 1): every token id already in the sequence (prompt + generated) gets
    logit / p where the logit > 0, logit * p where <= 0 (each id once, however often it occurs);
  temperature T (!= 1): logits / T;
  top-k k (> 0): logits below the k-th largest are -inf (ties with the k-th kept);
  top-p q (< 1): sort ascending, softmax, cumulative sum; tokens whose cumulative probability is
    <= 1 - q are -inf, the largest one always kept.

Padding positions of a left-padded prompt do not count as "already in the sequence" (HF batched
generate would penalise the pad id; a batch of one, as the MINER authors ran, has no pads).
Seeded sampling uses JAX's PRNG, so draws differ from torch's; the distribution is the same.
"""
import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Sampling:
  """Decoding settings (hashable: a static jit argument). do_sample False -> greedy (only the
  repetition penalty changes the logits); top_k 0 and top_p 1.0 are off."""
  do_sample: bool = False
  temperature: float = 1.0
  top_k: int = 0
  top_p: float = 1.0
  repetition_penalty: float = 1.0

  def __post_init__(self):
    if not self.repetition_penalty > 0:
      raise ValueError(f"repetition_penalty must be > 0; got {self.repetition_penalty}")
    if self.do_sample and not self.temperature > 0:
      raise ValueError(f"sampling needs temperature > 0; got {self.temperature} (use do_sample=False for greedy)")
    if self.top_k < 0 or not 0.0 < self.top_p <= 1.0:
      raise ValueError(f"top_k must be >= 0 and top_p in (0, 1]; got top_k={self.top_k}, top_p={self.top_p}")

  @classmethod
  def from_args(cls, temperature=0.0, do_sample=None, top_k=0, top_p=1.0, repetition_penalty=1.0):
    """`generate`'s keywords -> Sampling. do_sample None (the legacy call): sample iff temperature > 0."""
    temperature = 1.0 if temperature is None else float(temperature)
    if do_sample is None:
      do_sample = temperature > 0.0
    return cls(do_sample=bool(do_sample), temperature=temperature if do_sample else 1.0, top_k=int(top_k or 0),
               top_p=float(1.0 if top_p is None else top_p),
               repetition_penalty=float(1.0 if repetition_penalty is None else repetition_penalty))

  @classmethod
  def from_generation_config(cls, gen: dict):
    """HF generation_config.json fields -> Sampling (HF's defaults for missing fields)."""
    return cls.from_args(temperature=gen.get("temperature", 1.0), do_sample=bool(gen.get("do_sample", False)),
                         top_k=gen.get("top_k", 50), top_p=gen.get("top_p", 1.0),
                         repetition_penalty=gen.get("repetition_penalty", 1.0))

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


def seen_tokens(ids, valid, vocab: int):
  """int[B, T] token ids, bool[B, T] positions that count -> bool[B, V] ids present in each row."""
  rows = jnp.broadcast_to(jnp.arange(ids.shape[0])[:, None], ids.shape)
  safe = jnp.clip(ids, 0, vocab - 1)
  return jnp.zeros((ids.shape[0], vocab), bool).at[rows, safe].max(valid & (ids >= 0) & (ids < vocab))


def add_token(seen, token):
  """bool[B, V], int[B] (-1 = none) -> seen with each row's token marked."""
  valid = token >= 0
  return seen.at[jnp.arange(seen.shape[0]), jnp.maximum(token, 0)].max(valid)


def process_logits(logits, seen, sampling: Sampling):
  """float[B, V] next-token logits, bool[B, V] ids already in the sequence -> float32[B, V]
  processed logits (HF order; see the module docstring). -inf marks removed tokens."""
  x = logits.astype(jnp.float32)
  p = sampling.repetition_penalty
  if p != 1.0:
    x = jnp.where(seen, jnp.where(x < 0, x * p, x / p), x)
  if not sampling.do_sample:
    return x
  if sampling.temperature != 1.0:
    x = x / sampling.temperature
  if sampling.top_k > 0:
    k = min(sampling.top_k, x.shape[-1])
    kth = jax.lax.top_k(x, k)[0][..., -1:]
    x = jnp.where(x < kth, -jnp.inf, x)
  if sampling.top_p < 1.0:
    order = jnp.argsort(x, axis=-1)                                     # ascending
    ranked = jnp.take_along_axis(x, order, axis=-1)
    cum = jnp.cumsum(jax.nn.softmax(ranked, axis=-1), axis=-1)
    drop_ranked = (cum <= 1.0 - sampling.top_p).at[..., -1].set(False)
    rows = jnp.arange(x.shape[0])[:, None]
    drop = jnp.zeros_like(drop_ranked).at[rows, order].set(drop_ranked)
    x = jnp.where(drop, -jnp.inf, x)
  return x


def pick(logits, seen, key, sampling: Sampling):
  """float[B, V], bool[B, V], PRNG key -> int32[B]: argmax (greedy) or a draw from the processed logits."""
  x = process_logits(logits, seen, sampling)
  if not sampling.do_sample:
    return jnp.argmax(x, axis=-1).astype(jnp.int32)
  return jax.random.categorical(key, x, axis=-1).astype(jnp.int32)
