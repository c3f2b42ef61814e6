"""The shared pieces of the tiny demo checkpoint writers (data/synthetic/demo_checkpoint.py), checked
against plain numpy / direct computations."""
import json
import os

import numpy as np

from mmneuron_jax.data.synthetic import demo_checkpoint as ckpt


def test_word_vocab_blanks_specials_and_adds_base_words():
  words = ckpt.word_vocab(["Hi<|x|>there, 42!", "ok"], specials=["<|x|>"], always="<>")
  expected = sorted(set("0123456789abcdefghijklmnopqrstuvwxyz") | {"hi", "there", ",", "42", "!", "ok", "<", ">"})
  assert words == expected
  assert "|" in ckpt.word_vocab(["<|x|>"])  # not blanked without `specials`


def test_padded_vocab_size():
  assert [ckpt.padded_vocab_size(n) for n in (1, 8, 9, 16, 17)] == [8, 8, 16, 16, 24]


def test_random_state_draws_in_sorted_order_with_rules_first():
  shapes = {"b.norm.weight": (3,), "a.bias": (4,), "c.weight": (5, 2, 3), "d.pos": (2, 2)}
  rules = [(r"pos$", lambda rng, shape: np.full(shape, 7.0))]  # consumes no random numbers
  state = ckpt.random_state(shapes, seed=4, norm=r"norm\.weight$", gain=2.0, rules=rules)
  rng = np.random.default_rng(4)
  ref = {"a.bias": 0.02 * rng.standard_normal(4), "b.norm.weight": 1.0 + 0.1 * rng.standard_normal(3),
         "c.weight": 2.0 * rng.standard_normal((5, 2, 3)) / np.sqrt(6), "d.pos": np.full((2, 2), 7.0)}
  assert set(state) == set(ref)
  for name, arr in ref.items():
    assert state[name].dtype == np.float32
    np.testing.assert_array_equal(state[name], arr.astype(np.float32), err_msg=name)


def test_decoder_layer_shapes():
  t = {"hidden_size": 8, "intermediate_size": 12, "num_attention_heads": 4, "num_key_value_heads": 2,
       "num_hidden_layers": 2}
  plain = ckpt.decoder_layer_shapes("m.layers.", t)
  assert len(plain) == 2 * 9 and plain["m.layers.1.self_attn.k_proj.weight"] == (4, 8)
  assert plain["m.layers.0.mlp.down_proj.weight"] == (8, 12)
  biased = ckpt.decoder_layer_shapes("m.layers.", t, qkv_bias=True)
  assert set(biased) - set(plain) == {f"m.layers.{i}.self_attn.{p}_proj.bias" for i in (0, 1) for p in "qkv"}
  assert biased["m.layers.0.self_attn.v_proj.bias"] == (4,)


def test_word_tokenizer_and_checkpoint_files(tmp_path):
  import transformers
  from safetensors.numpy import load_file
  tokens = ["<pad>", "<unk>", "<x>", "hello", "world", "!"]
  vocab = ckpt.write_word_tokenizer(str(tmp_path / "tok"), tokens, ["<pad>", "<unk>", "<x>"],
                                    {"pad_token": "<pad>", "unk_token": "<unk>"})
  assert vocab == {t: i for i, t in enumerate(tokens)}
  with open(tmp_path / "tok" / "tokenizer_config.json") as f:
    assert json.load(f)["tokenizer_class"] == "PreTrainedTokenizerFast"
  tok = transformers.PreTrainedTokenizerFast.from_pretrained(str(tmp_path / "tok"))
  assert tok("Hello <x> WORLD! nope")["input_ids"] == [3, 2, 4, 5, 1]
  state = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
  ckpt.save_checkpoint(str(tmp_path), state, {"model_type": "demo"})
  np.testing.assert_array_equal(load_file(os.path.join(tmp_path, "model.safetensors"))["w"], state["w"])
  with open(tmp_path / "config.json") as f:
    assert json.load(f) == {"model_type": "demo"}
