"""The conversion engine: lazy safetensors reader, declarative rules, checks, errors."""
import json
import os
import subprocess
import sys
import textwrap

import jax
import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy
import torch
from safetensors.torch import save_file as torch_save_file

from mmneuron_jax.convert import mapping, transforms as T
from mmneuron_jax.convert.checks import reject_unsupported
from mmneuron_jax.convert.mapping import ConversionError, Rule, UnsupportedConfigError, apply_rules
from mmneuron_jax.convert.safetensors_reader import CheckpointReader

L, D, F, H, KV, DH = 3, 8, 12, 2, 1, 4  # layers, width, neurons, q heads, kv heads, head dim
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_ckpt(path, tensors: dict, shards: int = 1, config: dict | None = None):
  """Write a HF-style checkpoint dir: config.json + model.safetensors or a `shards`-way index."""
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(config or {"model_type": "llama"}, f)
  if shards == 1:
    safetensors.numpy.save_file(tensors, os.path.join(path, "model.safetensors"))
    return str(path)
  names = sorted(tensors)
  weight_map = {}
  for s in range(shards):
    file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
    part = {n: tensors[n] for n in names[s::shards]}
    safetensors.numpy.save_file(part, os.path.join(path, file))
    weight_map.update({n: file for n in part})
  with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
    json.dump({"metadata": {}, "weight_map": weight_map}, f)
  return str(path)


def llama_tensors(prefix="model.", seed=0, extra=True) -> dict:
  """A tiny Llama-shaped state dict (torch layout), L layers."""
  rng = np.random.default_rng(seed)
  t = {}
  for i in range(L):
    p = f"{prefix}layers.{i}."
    t[p + "self_attn.q_proj.weight"] = rng.standard_normal((H * DH, D), np.float32)
    t[p + "self_attn.k_proj.weight"] = rng.standard_normal((KV * DH, D), np.float32)
    t[p + "self_attn.v_proj.weight"] = rng.standard_normal((KV * DH, D), np.float32)
    t[p + "self_attn.o_proj.weight"] = rng.standard_normal((D, H * DH), np.float32)
    t[p + "mlp.gate_proj.weight"] = rng.standard_normal((F, D), np.float32)
    t[p + "mlp.up_proj.weight"] = rng.standard_normal((F, D), np.float32)
    t[p + "mlp.down_proj.weight"] = rng.standard_normal((D, F), np.float32)
    t[p + "input_layernorm.weight"] = rng.standard_normal((D,), np.float32)
    if extra:
      t[p + "self_attn.rotary_emb.inv_freq"] = rng.standard_normal((DH // 2,), np.float32)
  t[prefix + "embed_tokens.weight"] = rng.standard_normal((32, D), np.float32)
  t[prefix + "norm.weight"] = rng.standard_normal((D,), np.float32)
  return t


def llama_rules(prefixes=("model.language_model.", "model.")):
  """The stacked-layer map, with two name layouts as alternatives and a fused q/k/v kernel."""
  def alt(name):
    return tuple(p + name for p in prefixes)

  qkv = tuple([p + f"layers.{{i}}.self_attn.{n}_proj.weight" for n in "qkv"] for p in prefixes)
  return [
      Rule(("layers", "attn", "qkv", "kernel"), qkv, T.concat_transpose, L),
      Rule(("layers", "attn", "o", "kernel"), alt("layers.{i}.self_attn.o_proj.weight"), T.transpose, L),
      Rule(("layers", "mlp", "gate", "kernel"), alt("layers.{i}.mlp.gate_proj.weight"), T.transpose, L),
      Rule(("layers", "mlp", "up", "kernel"), alt("layers.{i}.mlp.up_proj.weight"), T.transpose, L),
      Rule(("layers", "mlp", "down", "kernel"), alt("layers.{i}.mlp.down_proj.weight"), T.transpose, L),
      Rule(("layers", "input_norm", "scale"), alt("layers.{i}.input_layernorm.weight"), None, L),
      Rule(("embed_tokens",), alt("embed_tokens.weight")),
      Rule(("final_norm",), alt("norm.weight")),
  ]


IGNORE = [r"rotary_emb\.inv_freq$"]


def expected(t, prefix="model."):
  def stack(name, fn=lambda x: x):
    return np.stack([fn(t[f"{prefix}layers.{i}.{name}"]) for i in range(L)])
  qkv = np.stack([np.concatenate([t[f"{prefix}layers.{i}.self_attn.{n}_proj.weight"] for n in "qkv"]).T
                  for i in range(L)])
  return {
      ("layers", "attn", "qkv", "kernel"): qkv,
      ("layers", "attn", "o", "kernel"): stack("self_attn.o_proj.weight", np.transpose),
      ("layers", "mlp", "gate", "kernel"): stack("mlp.gate_proj.weight", np.transpose),
      ("layers", "mlp", "up", "kernel"): stack("mlp.up_proj.weight", np.transpose),
      ("layers", "mlp", "down", "kernel"): stack("mlp.down_proj.weight", np.transpose),
      ("layers", "input_norm", "scale"): stack("input_layernorm.weight"),
      ("embed_tokens",): t[prefix + "embed_tokens.weight"],
      ("final_norm",): t[prefix + "norm.weight"],
  }


def leaf(tree, path):
  for k in path:
    tree = tree[k]
  return tree


# -- reader ---------------------------------------------------------------------------------

@pytest.mark.parametrize("shards", [1, 2])
def test_reader_keys_shapes_get(tmp_path, shards):
  t = llama_tensors()
  r = CheckpointReader(write_ckpt(tmp_path / "ck", t, shards))
  assert r.keys() == set(t) and r.config["model_type"] == "llama"
  assert len(r.files) == shards
  name = "model.layers.1.mlp.gate_proj.weight"
  assert r.shape(name) == (F, D) and r.dtype(name) == np.float32
  assert not r.used
  np.testing.assert_array_equal(r.get(name), t[name])
  assert r.used == {name}
  with pytest.raises(KeyError, match="model.nope"):
    r.get("model.nope")


def test_reader_bf16_and_slices(tmp_path):
  g = torch.Generator().manual_seed(0)
  tt = {"w_bf16": torch.randn(6, 10, generator=g).bfloat16(), "w_f16": torch.randn(6, 10, generator=g).half(),
        "w_f32": torch.randn(4, 5, 3, generator=g), "scalar": torch.tensor(2.5).bfloat16(),
        "ids": torch.arange(7)}
  os.makedirs(tmp_path / "ck")
  (tmp_path / "ck" / "config.json").write_text("{}")
  torch_save_file(tt, str(tmp_path / "ck" / "model.safetensors"))
  r = CheckpointReader(tmp_path / "ck")
  assert r.dtype("w_bf16") == np.dtype(ml_dtypes.bfloat16) and r.dtype("ids") == np.int64
  full = r.get("w_bf16")
  assert full.dtype == ml_dtypes.bfloat16 and full.shape == (6, 10)
  np.testing.assert_array_equal(full.view(np.uint16), tt["w_bf16"].view(torch.int16).numpy().view(np.uint16))
  np.testing.assert_array_equal(r.get("w_f16"), tt["w_f16"].numpy())
  assert float(r.get("scalar")) == 2.5
  for name in ("w_bf16", "w_f16", "w_f32"):
    full = r.get(name)
    for index in [(slice(1, 4),), (slice(None), slice(2, 7)), (slice(3, 6), slice(0, 1)),
                  (slice(0, 0),), (2, slice(1, 3)), (2,), (slice(1, 4), slice(None)), (slice(-2, None),)]:
      got = r.get_slice(name, index)
      assert got.dtype == full.dtype
      np.testing.assert_array_equal(got, full[index])
  np.testing.assert_array_equal(r.get_slice("ids", (slice(2, 5),)), np.arange(2, 5))


def test_blockwise_load_casts_into_an_aligned_buffer_the_device_adopts(tmp_path, monkeypatch):
  """Unstacked identity / transpose params are read a few rows at a time (BLOCK_BYTES forced tiny
  here) and cast into their own 64-byte-aligned buffer, which jax.device_put on CPU adopts uncopied."""
  g = torch.Generator().manual_seed(0)
  tt = {"emb": torch.randn(37, 10, generator=g).half(), "head": torch.randn(23, 6, generator=g).bfloat16(),
        "cube": torch.randn(5, 4, 3, generator=g), "ids": torch.arange(11), "layers.0.w": torch.randn(7, 3, generator=g),
        "layers.1.w": torch.randn(7, 3, generator=g).half()}
  os.makedirs(tmp_path / "ck")
  (tmp_path / "ck" / "config.json").write_text("{}")
  torch_save_file(tt, str(tmp_path / "ck" / "model.safetensors"))
  monkeypatch.setattr(mapping, "BLOCK_BYTES", 40)
  rules = [Rule(("emb",), "emb"), Rule(("head",), "head", T.transpose), Rule(("cube",), "cube", T.transpose),
           Rule(("ids",), "ids"), Rule(("w",), "layers.{i}.w", T.transpose, 2)]
  for dtype, np_dtype in (("float32", np.float32), ("bfloat16", ml_dtypes.bfloat16)):
    params = apply_rules(CheckpointReader(tmp_path / "ck"), rules, dtype)
    f32 = {k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in tt.items()}
    want = {"emb": f32["emb"], "head": f32["head"].T, "cube": f32["cube"].T, "ids": f32["ids"],
            "w": np.stack([f32["layers.0.w"].T, f32["layers.1.w"].T])}
    for k, w in want.items():
      got = params[k]
      assert np.issubdtype(got.dtype, np.integer) if k == "ids" else got.dtype == np_dtype, k
      np.testing.assert_array_equal(np.asarray(got), w.astype(got.dtype), err_msg=k)  # exact: one rounding
  host = mapping.empty_aligned((3, 5), np.float32)
  assert host.ctypes.data % mapping.ALIGN == 0 and host.shape == (3, 5)
  if jax.default_backend() == "cpu":
    host[...] = 1.0
    assert jax.device_put(host).unsafe_buffer_pointer() == host.ctypes.data  # no second copy


def test_reader_sharded_get_slice(tmp_path):
  t = llama_tensors()
  r = CheckpointReader(write_ckpt(tmp_path / "ck", t, shards=2))
  for name in ("model.layers.2.mlp.down_proj.weight", "model.embed_tokens.weight"):
    np.testing.assert_array_equal(r.get_slice(name, (slice(1, 5), slice(3, 8))), t[name][1:5, 3:8])


def test_reader_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    CheckpointReader(tmp_path / "nowhere")
  os.makedirs(tmp_path / "noconf")
  with pytest.raises(FileNotFoundError, match="config.json"):
    CheckpointReader(tmp_path / "noconf")
  os.makedirs(tmp_path / "noweights")
  (tmp_path / "noweights" / "config.json").write_text("{}")
  with pytest.raises(FileNotFoundError, match="no safetensors"):
    CheckpointReader(tmp_path / "noweights")
  path = write_ckpt(tmp_path / "sharded", llama_tensors(), shards=2)
  os.remove(os.path.join(path, "model-00002-of-00002.safetensors"))
  with pytest.raises(FileNotFoundError, match="model-00002-of-00002.safetensors"):
    CheckpointReader(path)


# -- rules ----------------------------------------------------------------------------------

@pytest.mark.parametrize("prefix,shards", [("model.", 1), ("model.language_model.", 2)])
def test_apply_rules_both_layouts(tmp_path, prefix, shards):
  t = llama_tensors(prefix)
  reader = CheckpointReader(write_ckpt(tmp_path / "ck", t, shards))
  params = apply_rules(reader, llama_rules(), "float32", ignore=IGNORE)
  for path, want in expected(t, prefix).items():
    got = leaf(params, path)
    assert isinstance(got, jax.Array) and got.dtype == np.float32, path
    np.testing.assert_array_equal(np.asarray(got), want, err_msg=str(path))
  assert leaf(params, ("layers", "attn", "qkv", "kernel")).shape == (L, D, (H + 2 * KV) * DH)
  assert not any(k.endswith("inv_freq") for k in reader.used)


def test_apply_rules_bf16_and_per_part_alternatives(tmp_path):
  t = llama_tensors(extra=False)
  reader = CheckpointReader(write_ckpt(tmp_path / "ck", t))
  rules = llama_rules()
  # Per-part alternatives: each fused part picks its own layout.
  rules[0] = Rule(rules[0].path, [(f"x.layers.{{i}}.self_attn.{n}_proj.weight", f"model.layers.{{i}}.self_attn."
                                   f"{n}_proj.weight") for n in "qkv"], T.concat_transpose, L)
  params = apply_rules(reader, rules, "bfloat16")
  for path, want in expected(t).items():
    got = leaf(params, path)
    assert got.dtype == jax.numpy.bfloat16
    np.testing.assert_array_equal(np.asarray(got).view(np.uint16), want.astype(ml_dtypes.bfloat16).view(np.uint16))


def test_transforms():
  w = np.arange(24.0).reshape(2, 3, 4)
  np.testing.assert_array_equal(T.transpose(w[0]), w[0].T)
  conv = np.arange(2 * 3 * 4 * 5.0).reshape(2, 3, 4, 5)  # O I H W
  assert T.conv_to_hwio(conv).shape == (4, 5, 3, 2) and T.conv_to_hwio(conv)[1, 2, 0, 1] == conv[1, 0, 1, 2]
  k = np.arange(8 * 12.0).reshape(8, 12)
  split = T.heads(T.split_heads, num_heads=3)(k)
  assert split.shape == (8, 3, 4) and split[2, 1, 3] == k[2, 7]
  np.testing.assert_array_equal(T.merge_heads(split), k)
  assert T.name_of(T.heads(T.split_heads, num_heads=3)) == "split_heads(num_heads=3)"


def test_missing_tensor_error_lists_all(tmp_path):
  t = llama_tensors()
  del t["model.layers.1.mlp.up_proj.weight"]
  del t["model.norm.weight"]
  path = write_ckpt(tmp_path / "ck", t)
  with pytest.raises(ConversionError) as e:
    apply_rules(CheckpointReader(path), llama_rules(), "float32", ignore=IGNORE)
  msg = str(e.value)
  assert "model.layers.1.mlp.up_proj.weight" in msg and "model.language_model.norm.weight" in msg
  assert path in msg and "missing" in msg
  assert "not used" not in msg  # the layers that are there count as claimed, not as leftovers


def test_unused_tensor_error_lists_all_sorted(tmp_path):
  t = llama_tensors()
  t["model.layers.0.mlp.extra_bias"] = np.zeros(3, np.float32)
  t["lm_head.weight"] = np.zeros((32, D), np.float32)
  reader = CheckpointReader(write_ckpt(tmp_path / "ck", t))
  with pytest.raises(ConversionError) as e:
    apply_rules(reader, llama_rules(), "float32", ignore=IGNORE)
  msg = str(e.value)
  assert msg.index("lm_head.weight") < msg.index("model.layers.0.mlp.extra_bias")
  assert "inv_freq" not in msg  # ignored
  assert not reader.used  # every check runs before any data is read
  with pytest.raises(ConversionError, match="inv_freq"):  # not ignored -> reported
    apply_rules(CheckpointReader(write_ckpt(tmp_path / "ck2", llama_tensors())), llama_rules(), "float32")


def test_tensor_used_twice_and_path_clash(tmp_path):
  reader = CheckpointReader(write_ckpt(tmp_path / "ck", {"a": np.ones(2, np.float32)}))
  with pytest.raises(ConversionError, match="more than one rule"):
    apply_rules(reader, [Rule(("x",), "a"), Rule(("y",), "a")])
  with pytest.raises(ConversionError, match="produced by two rules"):
    apply_rules(reader, [Rule(("x",), "a"), Rule(("x",), "a")])
  with pytest.raises(TypeError, match="stack"):
    Rule(("x",), "a.{i}")


@pytest.mark.parametrize("bad", ["float64", "int8", "bf16", None])
def test_bad_dtype_request(tmp_path, bad):
  reader = CheckpointReader(write_ckpt(tmp_path / "ck", {"a": np.ones(2, np.float32)}))
  with pytest.raises(ValueError, match=repr(bad).replace("(", r"\(")):
    apply_rules(reader, [Rule(("x",), "a")], bad)


def test_reject_unsupported_names_every_bad_field():
  """The config allowlist (convert/checks.py, used by every family's `from_hf`)."""
  reject_unsupported("text_config", {"hidden_act": ("silu", {"silu"}), "attention_bias": (False, {False})})
  with pytest.raises(UnsupportedConfigError) as e:
    reject_unsupported("text_config", {"hidden_act": ("gelu", {"silu"}), "attention_bias": (True, {False}),
                                       "mlp_bias": (False, {False})})
  msg = str(e.value)
  assert "text_config.hidden_act='gelu' (supported: [\"'silu'\"])" in msg
  assert "text_config.attention_bias=True (supported: ['False'])" in msg
  assert "mlp_bias" not in msg
  with pytest.raises(UnsupportedConfigError, match=r"llm\.rope\.type='yarn'"):
    reject_unsupported("llm", {"rope.type": ("yarn", {"default", "linear"})})


# -- sharded loading ------------------------------------------------------------------------

def test_apply_rules_sharded_one_device(tmp_path):
  t = llama_tensors()
  path = write_ckpt(tmp_path / "ck", t, shards=2)
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("fsdp",))
  rules = llama_rules()
  shardings = {}
  for rule in rules:
    node = shardings
    for k in rule.path[:-1]:
      node = node.setdefault(k, {})
    node[rule.path[-1]] = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  plain = apply_rules(CheckpointReader(path), rules, "bfloat16", ignore=IGNORE)
  sharded = apply_rules(CheckpointReader(path), rules, "bfloat16", ignore=IGNORE, shardings=shardings)
  for p in expected(t):
    a, b = leaf(plain, p), leaf(sharded, p)
    assert b.sharding == leaf(shardings, p) and b.dtype == a.dtype and b.shape == a.shape
    np.testing.assert_array_equal(np.asarray(a).view(np.uint16), np.asarray(b).view(np.uint16))
  del shardings["final_norm"]
  with pytest.raises(ConversionError, match="final_norm"):
    apply_rules(CheckpointReader(path), rules, "float32", ignore=IGNORE, shardings=shardings)


_MULTI_DEVICE = textwrap.dedent("""
    import sys, numpy as np, jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    sys.path[:0] = [sys.argv[2], sys.argv[2] + "/tests"]
    import test_convert_engine as t
    from mmneuron_jax.convert.mapping import apply_rules
    from mmneuron_jax.convert.safetensors_reader import CheckpointReader
    assert len(jax.devices()) == 4
    t.L = 4  # so the layer axis splits in two
    tensors = t.llama_tensors()
    path = t.write_ckpt(sys.argv[1], tensors, shards=2)
    mesh = Mesh(np.array(jax.devices()).reshape(2, 2), ("fsdp", "tensor"))
    specs = {("layers", "attn", "qkv", "kernel"): P(None, "fsdp", "tensor"),
             ("layers", "attn", "o", "kernel"): P(None, "tensor", "fsdp"),
             ("layers", "mlp", "gate", "kernel"): P(None, "fsdp", "tensor"),
             ("layers", "mlp", "up", "kernel"): P("fsdp", None, "tensor"),
             ("layers", "mlp", "down", "kernel"): P(None, "tensor", None),
             ("layers", "input_norm", "scale"): P(None, "fsdp"),
             ("embed_tokens",): P("tensor", "fsdp"), ("final_norm",): P()}
    shardings = {}
    for path_, spec in specs.items():
      node = shardings
      for k in path_[:-1]:
        node = node.setdefault(k, {})
      node[path_[-1]] = NamedSharding(mesh, spec)
    reader = CheckpointReader(path)
    full_reads = []
    get = reader.get
    reader.get = lambda name: (full_reads.append(name), get(name))[1]
    params = apply_rules(reader, t.llama_rules(), "float32", ignore=t.IGNORE, shardings=shardings)
    for p, want in t.expected(tensors).items():
      got = t.leaf(params, p)
      assert got.sharding.spec == specs[p], p
      np.testing.assert_array_equal(np.asarray(got), want, err_msg=str(p))
    # Only the fused q/k/v (not slice-able) reads whole tensors; the rest read device slices.
    assert full_reads and all("_proj.weight" in n and "self_attn" in n and "o_proj" not in n
                              for n in full_reads), full_reads
    print("OK")
""")


def test_apply_rules_sharded_four_fake_devices(tmp_path):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", _MULTI_DEVICE, str(tmp_path / "ck"), ROOT], env=env,
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == 0 and "OK" in out.stdout, out.stdout + out.stderr
