"""Throughput of the analysis passes on a Llama-shaped decoder with random weights, JAX vs PyTorch.

COMMAND (CPU, tiny; a minute):  python benchmarks/throughput.py
COMMAND (one GPU, 7B):          python benchmarks/throughput.py --size=7b --dtype=bfloat16

Operations, each on the same batch [B, T] of random token ids (no padding):
  forward     logits of the plain forward
  stats       GroupStats probe in the layer scan: per-group count of act > 0, sum, sum of squares
              (JAX: `analysis.stats.make_step` on a mesh; PyTorch: forward hooks on every `mlp.act_fn`)
  masked      forward with a 0/1 neuron mask [L, F] on the MLP activations (PyTorch: a hook
              that multiplies the act_fn output)
  lens        logit lens at P "image-like" positions per row: every layer's residual through the
              final norm + unembedding, reduced to entropy and top-k (PyTorch: hooks on the
              decoder layers gathering those positions, then norm + lm_head per layer)
  grad        gradient importance d NLL / d ones-mask [L, F] of the next-token loss over every
              position (`analysis.importance.grad_importance`, layer scan rematerialised; PyTorch:
              a ones-mask leaf multiplied in by a hook on every `mlp.act_fn`, HF gradient
              checkpointing, weights frozen, `loss.backward()`)
The PyTorch reference is HF `LlamaForCausalLM` holding the same weights (copied from the JAX
params), run in the same process; its outputs are checked against ours (printed under the table).

MFU = model FLOPs / time / peak, where peak is a measured square matmul in the run's dtype
(fp32 at precision HIGHEST, as the fp32 path computes; bf16 at default precision). Model FLOPs
per token: 2 * (matmul params per layer) * L + 4 * L * T * H * hd (attention, full T x T as
computed) + 2 * D * V (unembedding; only for `forward` / `masked`) + 2 * D * V * L * P / T
(`lens`); `grad` counts forward + the backward to the activations, 2x `forward` (weights are
not differentiated; the rematerialised forward is not counted, as usual for MFU). The
statistics pass does not need the logits, so XLA never computes them.

Writes the table (markdown) to --out and prints it.
"""
import dataclasses
import os
import platform
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# JAX and PyTorch share the GPU: no up-front grab of 75% of its memory by XLA.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

from absl import app, flags

from benchmarks.bench_utils import _git_commit, _timed, measure_peak, write_results

SIZES = {  # Llama shapes: layers, width, MLP width, heads, kv heads, vocab; default batch and length
    "tiny": dict(layers=4, hidden=256, intermediate=688, heads=4, kv_heads=4, vocab=4096, batch=4, seq=128),
    "small": dict(layers=8, hidden=512, intermediate=1376, heads=8, kv_heads=8, vocab=8192, batch=4, seq=256),
    "1b": dict(layers=22, hidden=2048, intermediate=5632, heads=32, kv_heads=4, vocab=32000, batch=8, seq=2048),
    "7b": dict(layers=32, hidden=4096, intermediate=11008, heads=32, kv_heads=32, vocab=32000, batch=4, seq=2048),
}

_SIZE = flags.DEFINE_enum("size", "tiny", list(SIZES), "Model shape preset (Llama-2-7B / Vicuna-7B for 7b).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Params and compute dtype.")
_BATCH = flags.DEFINE_integer("batch", None, "Rows per batch (default: per size).")
_SEQ = flags.DEFINE_integer("seq", None, "Tokens per row (default: per size).")
_LAYERS = flags.DEFINE_integer("layers", None, "Override the number of layers.")
_GROUPS = flags.DEFINE_integer("groups", 5, "Statistics groups (domains).")
_LENS_P = flags.DEFINE_integer("lens_positions", None, "Lens positions per row (default min(576, T // 2)).")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed runs per operation (median reported).")
_WARMUP = flags.DEFINE_integer("warmup", 1, "Untimed runs after compilation.")
_MESH = flags.DEFINE_string("mesh", "-1,1,1", "data,fsdp,tensor sizes over all devices (-1 = the rest).")
_TORCH = flags.DEFINE_bool("torch", True, "Also time the PyTorch (HF + hooks) reference.")
_TORCH_THREADS = flags.DEFINE_integer("torch_threads", None, "torch.set_num_threads (default: torch's own).")
_TORCH_DEVICE = flags.DEFINE_string("torch_device", None, "cuda / cpu (default: cuda if available).")
_PEAK_N = flags.DEFINE_integer("peak_n", None, "Matmul size for the peak (default 8192 GPU/TPU, 2048 CPU).")
_OPS = flags.DEFINE_list("ops", "forward,stats,masked,lens,grad", "Operations to time.")
_ATTENTION = flags.DEFINE_enum("attention", "xla", ["xla", "cudnn", "fused"],
                                "JAX attention kernel (cudnn: bf16 flash; fused: XLA's choice).")
_OUT = flags.DEFINE_string("out", None, "Markdown table path (default benchmarks/results/<backend>_<size>_<dtype>.md).")


# -- JAX side ----------------------------------------------------------------------------------

def build_jax(shape: dict, dtype: str, mesh, attention: str = "xla"):
  """A text-only Llama `Model` (probe module 'llm') with random params placed on `mesh`."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  from mmneuron_jax import sharding as S
  from mmneuron_jax.models.base import Model
  from mmneuron_jax.models.llama import Decoder, DecoderConfig
  from mmneuron_jax.nn.attention import causal_mask
  from mmneuron_jax.nn.policy import Policy

  hf = {"model_type": "llama", "vocab_size": shape["vocab"], "hidden_size": shape["hidden"],
        "intermediate_size": shape["intermediate"], "num_hidden_layers": shape["layers"],
        "num_attention_heads": shape["heads"], "num_key_value_heads": shape["kv_heads"], "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": False}

  @dataclasses.dataclass(frozen=True)
  class TextConfig:
    text: Any

  class TextLM(nn.Module):
    """The decoder alone, named 'llm' (as inside LLaVA-NeXT) so the sharding rules apply."""
    cfg: Any
    policy: Policy = Policy()
    capture: tuple = ()
    return_kv: bool = False
    remat: bool = False
    extra_inputs = ()
    generation_keeps_position_ids = False

    @nn.compact
    def __call__(self, input_ids, positions, attn_mask, *, masks=None, probe=None, lens=None, cache=None,
                 cache_index=None):
      masks, probe = masks or {}, probe or {}
      decoder = Decoder(cfg=self.cfg.text, policy=self.policy, capture="llm" in self.capture,
                        return_kv=self.return_kv, remat=self.remat, name="llm")
      logits, aux = decoder(input_ids, positions, attn_mask, mask=masks.get("llm"), probe=probe.get("llm"), lens=lens,
                            cache=cache, cache_index=cache_index)
      return logits, {"llm": aux}

  cfg = TextConfig(DecoderConfig.from_hf(hf))
  module = TextLM(cfg, Policy(dtype, dtype, attention=attention))
  ids = jnp.zeros((1, 8), jnp.int32)
  init = lambda key: module.init(key, ids, jnp.zeros((1, 8), jnp.int32), causal_mask(jnp.ones((1, 8))))["params"]
  abstract = jax.eval_shape(init, jax.random.PRNGKey(0))
  params = jax.jit(init, out_shardings=S.param_shardings(abstract, mesh))(jax.random.PRNGKey(0))
  model = Model(family="llama_text", module=module, params=params, config={"text_config": hf},
                probe_modules={"llm": (shape["layers"], shape["intermediate"])}, prepare_fn=dict,
                groups_fn=lambda *a: {}).on_mesh(mesh)
  return model, hf


def flops_per_token(shape: dict, seq: int, lens_positions: int) -> dict:
  d, f, h, k, v, layers = (shape[n] for n in ("hidden", "intermediate", "heads", "kv_heads", "vocab", "layers"))
  hd = d // h
  per_layer = d * h * hd + 2 * d * k * hd + h * hd * d + 3 * d * f
  body = 2 * per_layer * layers + 4 * layers * seq * h * hd
  head = 2 * d * v
  return {"forward": body + head, "masked": body + head, "stats": body,
          "lens": body + head * layers * lens_positions / seq, "grad": 2 * (body + head)}


# -- PyTorch side ------------------------------------------------------------------------------

def build_torch(model, hf: dict, dtype: str, device: str):
  """HF LlamaForCausalLM with the JAX params copied in."""
  import numpy as np
  import torch
  import transformers

  tdtype = torch.float32 if dtype == "float32" else torch.bfloat16
  config = transformers.LlamaConfig(**{k: v for k, v in hf.items() if k != "model_type"})
  default = torch.get_default_dtype()
  torch.set_default_dtype(tdtype)  # build in the run's dtype, on the device (no fp32 7B copy)
  try:
    with torch.device(device):
      tm = transformers.LlamaForCausalLM(config).eval()
  finally:
    torch.set_default_dtype(default)

  def to_torch(x):
    x = np.asarray(x)
    if x.dtype.name == "bfloat16":
      return torch.from_numpy(x.view(np.uint16).copy()).view(torch.bfloat16)
    return torch.from_numpy(np.array(x))

  p = model.params["llm"]
  lay = p["layers"]
  names = {("attn", "q"): "self_attn.q_proj", ("attn", "k"): "self_attn.k_proj", ("attn", "v"): "self_attn.v_proj",
           ("attn", "o"): "self_attn.o_proj", ("mlp", "gate"): "mlp.gate_proj", ("mlp", "up"): "mlp.up_proj",
           ("mlp", "down"): "mlp.down_proj"}
  state = {"model.embed_tokens.weight": to_torch(p["embed_tokens"]), "model.norm.weight": to_torch(p["final_norm"]),
           "lm_head.weight": to_torch(p["lm_head"]).T}
  for i in range(hf["num_hidden_layers"]):
    for (a, b), name in names.items():
      state[f"model.layers.{i}.{name}.weight"] = to_torch(lay[a][b]["kernel"][i]).T
    state[f"model.layers.{i}.input_layernorm.weight"] = to_torch(lay["input_norm"]["scale"][i])
    state[f"model.layers.{i}.post_attention_layernorm.weight"] = to_torch(lay["post_attn_norm"]["scale"][i])
  missing, unexpected = tm.load_state_dict({k: v.contiguous() for k, v in state.items()}, strict=False)
  missing = [m for m in missing if "rotary_emb" not in m]
  if missing or unexpected:
    raise RuntimeError(f"torch state dict: missing {missing}, unexpected {unexpected}")
  return tm


class TorchOps:
  """The same four operations the PyTorch way: HF forward + forward hooks."""

  def __init__(self, tm, ids, groups, num_groups, mask, positions, top_k=10):
    import torch
    self.torch, self.tm = torch, tm
    self.ids = ids
    self.am = torch.ones_like(ids)
    self.onehot = torch.nn.functional.one_hot(groups.reshape(-1).clamp(min=0), num_groups).float()
    self.onehot *= (groups.reshape(-1) >= 0).float()[:, None]
    self.mask, self.positions, self.top_k = mask, positions, top_k
    self.layers = tm.model.layers

  def forward(self):
    return self.tm(input_ids=self.ids, attention_mask=self.am).logits

  def _with_hooks(self, modules, hook_fn, run):
    handles = [m.register_forward_hook(hook_fn(i)) for i, m in enumerate(modules)]
    try:
      return run()
    finally:
      for h in handles:
        h.remove()

  def stats(self):
    torch = self.torch
    results = []

    def make(i):
      def hook(mod, inp, out):
        a = out.reshape(-1, out.shape[-1]).float()
        results.append({"count": self.onehot.T @ (a > 0).float(), "sum": self.onehot.T @ a,
                        "sumsq": self.onehot.T @ (a * a)})
      return hook

    self._with_hooks([l.mlp.act_fn for l in self.layers], make, lambda: self.tm.model(input_ids=self.ids,
                                                                                      attention_mask=self.am))
    return {k: torch.stack([r[k] for r in results]) for k in ("count", "sum", "sumsq")}

  def masked(self):
    def make(i):
      return lambda mod, inp, out: out * self.mask[i].to(out.dtype)
    return self._with_hooks([l.mlp.act_fn for l in self.layers], make, self.forward)

  def lens(self):
    torch = self.torch
    results = []
    idx = self.positions[..., None]

    def make(i):
      def hook(mod, inp, out):
        h = out[0] if isinstance(out, tuple) else out
        sel = torch.take_along_dim(h, idx, dim=1)
        logits = self.tm.lm_head(self.tm.model.norm(sel)).float()
        logp = torch.log_softmax(logits, -1)
        top = torch.topk(logp, self.top_k, dim=-1)
        results.append({"entropy": -(logp.exp() * logp).sum(-1), "top_ids": top.indices})
      return hook

    self._with_hooks(list(self.layers), make, lambda: self.tm.model(input_ids=self.ids, attention_mask=self.am))
    return {k: torch.stack([r[k] for r in results]) for k in ("entropy", "top_ids")}

  def grad(self):
    """d NLL / d ones-mask per layer, float32[L, F] (NLL summed over positions 1..T-1)."""
    torch = self.torch
    f = self.mask.shape[-1]
    masks = [torch.ones(f, device=self.ids.device, dtype=torch.float32, requires_grad=True) for _ in self.layers]

    def make(i):
      return lambda mod, inp, out: out * masks[i].to(out.dtype)

    def run():
      logits = self.tm(input_ids=self.ids, attention_mask=self.am).logits
      logp = torch.log_softmax(logits[:, :-1].float(), -1)
      nll = -torch.take_along_dim(logp, self.ids[:, 1:, None], dim=-1).sum()
      nll.backward()
      return torch.stack([m.grad for m in masks])

    with torch.enable_grad():
      return self._with_hooks([l.mlp.act_fn for l in self.layers], make, run)


# -- main --------------------------------------------------------------------------------------

def main(argv):
  del argv
  import jax
  import numpy as np
  from mmneuron_jax import sharding as S
  from mmneuron_jax.analysis import stats
  from mmneuron_jax.analysis.logit_lens import Lens
  from mmneuron_jax.models.base import forward

  shape = dict(SIZES[_SIZE.value])
  if _LAYERS.value:
    shape["layers"] = _LAYERS.value
  b, t = _BATCH.value or shape["batch"], _SEQ.value or shape["seq"]
  p = _LENS_P.value or min(576, t // 2)
  g = _GROUPS.value
  dtype = _DTYPE.value
  mesh = S.make_mesh(*[int(x) for x in _MESH.value.split(",")])
  backend = jax.default_backend()
  device_kind = jax.devices()[0].device_kind

  peak_n = _PEAK_N.value or (2048 if backend == "cpu" else 8192)
  peak_before = measure_peak(dtype, peak_n)
  model, hf = build_jax(shape, dtype, mesh, _ATTENTION.value)
  rng = np.random.default_rng(0)
  ids = rng.integers(3, shape["vocab"], (b, t)).astype(np.int32)
  batch = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
  groups = np.repeat((np.arange(b) % g)[:, None], t, axis=1).astype(np.int32)
  mask = (rng.random((shape["layers"], shape["intermediate"])) > 0.1).astype(np.float32)
  start = min(1, t - p)
  positions = np.broadcast_to(np.arange(start, start + p, dtype=np.int32), (b, p)).copy()  # an image-like span
  lens = Lens(positions, None, 10)

  stats_step = stats.make_step(model, g)
  lens_step = model.jit_step("lens", lambda params, batch, lens: forward(model.module, params, batch, lens=lens).lens,
                             ("params", "batch", "batch"))  # the readouts only: logits never materialised
  params = model.params
  from mmneuron_jax.analysis.importance import grad_importance
  answer = np.ones_like(ids, bool)
  answer[:, 0] = False
  jax_ops = {
      "forward": lambda: model.apply(params, batch).logits,
      "stats": lambda: stats_step(params, batch, {"llm": groups}),
      "masked": lambda: model.apply(params, batch, masks={"llm": mask}).logits,
      "lens": lambda: lens_step(params, batch, lens),
      "grad": lambda: grad_importance(model, params, batch, answer)["llm"],
  }
  unknown = set(_OPS.value) - set(jax_ops)
  if unknown:
    raise app.UsageError(f"--ops: unknown {sorted(unknown)}; known {sorted(jax_ops)}")
  jax_ops = {k: v for k, v in jax_ops.items() if k in _OPS.value}
  ops = {("jax", name): (fn, jax.block_until_ready) for name, fn in jax_ops.items()}
  checks = []
  torch_info = "not run (--notorch)"
  if _TORCH.value:
    import torch
    if _TORCH_THREADS.value:
      torch.set_num_threads(_TORCH_THREADS.value)
    device = _TORCH_DEVICE.value or ("cuda" if torch.cuda.is_available() else "cpu")
    tm = build_torch(model, hf, dtype, device)
    tm.requires_grad_(False)
    if "grad" in jax_ops:  # activation checkpointing, like our remat (HF only checkpoints in train mode;
      tm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
      tm.train()  # Llama has no dropout, so train mode changes nothing else)
    to_dev = lambda x: torch.from_numpy(np.asarray(x)).to(device)
    tops = TorchOps(tm, to_dev(ids).long(), to_dev(groups).long(), g, to_dev(mask), to_dev(positions).long())
    sync = (lambda _: torch.cuda.synchronize()) if device.startswith("cuda") else (lambda _: None)

    def inference(fn):
      def run():
        with torch.inference_mode():
          return fn()
      return run

    for name in jax_ops:
      fn = getattr(tops, name)
      ops[("torch", name)] = (fn if name == "grad" else inference(fn), sync)
    torch_info = f"torch {torch.__version__} on {device} ({torch.get_num_threads()} threads), HF LlamaForCausalLM " \
                 f"({tm.config._attn_implementation} attention) + forward hooks"

  results, first_s, failed = {}, {}, []
  for key, (fn, block) in list(ops.items()):  # compile (JAX) / first run; a failing op is reported, not fatal
    t0 = time.perf_counter()
    try:
      results[key] = fn()
      block(results[key])
    except Exception as e:  # e.g. a kernel this backend lacks, or out of memory
      failed.append(f"{key[0]} {key[1]} failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
      del ops[key]
      continue
    first_s[key] = time.perf_counter() - t0
  jax_ops = {name: fn for name, fn in jax_ops.items() if ("jax", name) in ops}
  ops = {key: v for key, v in ops.items() if key[1] in jax_ops}
  times = {key: [] for key in ops}
  # Per op: JAX then PyTorch, each warmed up right before its timed runs (the other framework's
  # CPU thread pool may still be spinning just after it ran).
  for name in jax_ops:
    for key in [k for k in ops if k[1] == name]:
      fn, block = ops[key]
      for _ in range(_WARMUP.value):
        block(fn())
      times[key] = [_timed(fn, block) for _ in range(_REPEATS.value)]
  rows = [(fw, name, statistics.median(times[(fw, name)])) for fw, name in ops]
  compile_s = {name: s for (fw, name), s in first_s.items() if fw == "jax"}
  if _TORCH.value:
    checks = compare(results, np)

  peak = max(peak_before, measure_peak(dtype, peak_n))  # before and after: the machine's best
  flops = flops_per_token(shape, t, p)
  tokens = b * t
  jax_time = {name: s for fw, name, s in rows if fw == "jax"}
  lines = [
      "| op | framework | tokens/s | ms / batch | TFLOP/s | MFU | JAX speed-up |",
      "|---|---|---:|---:|---:|---:|---:|",
  ]
  table = []
  for fw, name, s in rows:
    tfl = flops[name] * tokens / s / 1e12
    speed = "" if fw == "jax" else f"{s / jax_time[name]:.2f}x"
    lines.append(f"| {name} | {fw} | {tokens / s:,.0f} | {s * 1e3:.1f} | {tfl:.3f} | {100 * tfl * 1e12 / peak:.1f}% "
                 f"| {speed} |")
    table.append({"op": name, "framework": fw, "tokens_per_s": tokens / s, "seconds": s, "tflops": tfl,
                  "mfu": tfl * 1e12 / peak})
  n_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(model.params))
  header = [
      f"size={_SIZE.value} ({n_params / 1e6:.1f}M params: L={shape['layers']} D={shape['hidden']} "
      f"F={shape['intermediate']} H={shape['heads']} KV={shape['kv_heads']} V={shape['vocab']}), dtype={dtype}, "
      f"batch {b} x {t} tokens, {g} groups, lens at {p} positions/row",
      f"JAX {jax.__version__} on {backend} ({device_kind}) x{jax.device_count()}, mesh {dict(mesh.shape)}; {torch_info}",
      f"host: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
      f"peak (best of 2 x 10 {peak_n}^2 matmuls, before and after, {dtype}"
      f"{', precision HIGHEST' if dtype == 'float32' else ''}): {peak / 1e12:.3f} TFLOP/s; "
      f"JAX compile+first run s: " + ", ".join(f"{k} {v:.1f}" for k, v in compile_s.items()),
      f"commit {_git_commit()}; median of {_REPEATS.value} runs after {_WARMUP.value} warm-up; "
      f"load average at the end {os.getloadavg()[0]:.2f}",
  ]
  text = "\n".join(header) + "\n\n" + "\n".join(lines) + "\n"
  if checks:
    text += "\nJAX vs PyTorch outputs (same weights): " + "; ".join(checks) + "\n"
  if failed:
    text += "\nFailed (not timed): " + "; ".join(failed) + "\n"
  write_results(_OUT.value, f"{backend}_{_SIZE.value}_{dtype}", text,
                {"header": header, "rows": table, "checks": checks, "failed": failed, "peak_flops": peak})


def compare(results, np) -> list[str]:
  """Agreement of the JAX and PyTorch outputs (sanity: both ran the same computation)."""
  t = lambda x: x.float().cpu().numpy()
  out = []
  have = lambda name: ("jax", name) in results and ("torch", name) in results
  for name in ("forward", "masked"):
    if not have(name):
      continue
    a, b = np.asarray(results[("jax", name)]), t(results[("torch", name)])
    out.append(f"{name} logits max|diff| {np.abs(a - b).max():.2e} (max|logit| {np.abs(b).max():.2f})")
  if have("grad"):
    a, b = np.asarray(results[("jax", "grad")]).ravel(), t(results[("torch", "grad")]).ravel()
    out.append(f"grad importance max rel diff {np.abs(a - b).max() / max(np.abs(b).max(), 1e-30):.1e}, "
               f"correlation {np.corrcoef(a, b)[0, 1]:.4f}")
  if not have("stats"):
    return out
  js, ts = results[("jax", "stats")]["llm"], results[("torch", "stats")]
  count_j, count_t = np.asarray(js["count"]), t(ts["count"])
  out.append(f"stats counts differ in {int((count_j != count_t).sum())} of {count_j.size} "
             f"(max {np.abs(count_j - count_t).max():.0f}), sums max rel diff "
             f"{np.abs(np.asarray(js['sum']) - t(ts['sum'])).max() / max(np.abs(t(ts['sum'])).max(), 1e-9):.1e}")
  if not have("lens"):
    return out
  je, te = np.asarray(results[("jax", "lens")]["entropy"]), t(results[("torch", "lens")]["entropy"])
  top_j = np.asarray(results[("jax", "lens")]["top_ids"])[..., 0]
  top_t = results[("torch", "lens")]["top_ids"].cpu().numpy()[..., 0]
  out.append(f"lens entropy max|diff| {np.abs(je - te).max():.2e} nats, top-1 agree {100 * (top_j == top_t).mean():.1f}%")
  return out


if __name__ == "__main__":
  app.run(main)
