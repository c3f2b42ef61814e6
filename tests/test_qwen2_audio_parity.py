"""Qwen2-Audio parity with HF PyTorch on a tiny random config (fp32, eager attention).

Three audios of three lengths (0.37 s, 0.81 s and 1.25 s, the last cut to the 1 s chunk)
over two rows (row 0 holds two audios), so the rows hold 9 + 20 and 25 audio tokens and one
is padded. GQA text model with the real Qwen2 special-token ids (vocab 151656), odd widths,
2 encoder layers. Tolerances: logits, neurons and lens entropies max-abs <= 1e-4; greedy
tokens exactly equal; our input builder equals HF's Qwen2AudioProcessor exactly.
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
import transformers

import hf_hooks
import mmneuron_jax
from mmneuron_jax.analysis import miner
from mmneuron_jax.analysis.logit_lens import Lens, positions_where
from mmneuron_jax.data.inputs import qwen2_audio as qwen2_audio_inputs
from mmneuron_jax.models.mllm import qwen2_audio

TOL = 1e-4
PAD, IM_START, IM_END, AUDIO, BOS, EOS = 151643, 151644, 151645, 151646, 151647, 151648
SAMPLES = (5920, 12960, 20000)  # 16 kHz waveforms -> 37, 81, 100 valid mel frames -> 9, 20, 25 tokens


def tiny_config():
  text = dict(model_type="qwen2", vocab_size=151656, hidden_size=48, intermediate_size=88, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, max_position_embeddings=512,
              rope_theta=10000.0, bos_token_id=PAD, eos_token_id=IM_END, pad_token_id=PAD)
  audio = dict(model_type="qwen2_audio_encoder", num_mel_bins=128, encoder_layers=2, encoder_attention_heads=4,
               encoder_ffn_dim=72, d_model=40, max_source_positions=50)
  return transformers.Qwen2AudioConfig(audio_config=audio, text_config=text, audio_token_index=AUDIO)


def build_hf(path, seed=0):
  torch.manual_seed(seed)
  config = tiny_config()
  config._attn_implementation = "eager"
  model = transformers.Qwen2AudioForConditionalGeneration(config).eval()
  with torch.no_grad():  # non-trivial norms and larger weights, so activations vary
    for name, p in model.named_parameters():
      if "norm" in name and p.ndim == 1:
        p.add_(0.1 * torch.randn_like(p))
      elif p.ndim >= 2 and "embed" not in name:
        p.mul_(3.0)
  model.save_pretrained(path)
  return model


def waveforms(seed=0):
  rng = np.random.default_rng(seed)
  t = [np.arange(n) / 16000.0 for n in SAMPLES]
  return [(0.3 * np.sin(2 * np.pi * (200 + 150 * i) * x) + 0.05 * rng.standard_normal(len(x))).astype(np.float32)
          for i, x in enumerate(t)]


def make_batch(config, padding_side="right", seed=0):
  """Row 0: chat text <audio> text <audio> text; row 1: <audio> text (shorter: padded)."""
  feats = qwen2_audio_inputs.extract_features(qwen2_audio_inputs.feature_extractor(chunk_length=1), waveforms(seed))
  rng = np.random.default_rng(seed + 1)
  text = lambda n: list(rng.integers(3, 1000, n))
  aud = [BOS, AUDIO, EOS]
  rows = [[IM_START] + text(3) + aud + text(2) + aud + text(4) + [IM_END], [IM_START] + aud + text(3) + [IM_END]]
  return qwen2_audio_inputs.build_batch(rows, feats["input_features"], feats["feature_attention_mask"],
                                        config.to_dict(), padding_side, PAD)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("qwen2_audio"))
  hf = build_hf(path)
  model = mmneuron_jax.load_hf(path)
  return hf, model, make_batch(hf.config)


def act_modules(hf):
  """HF modules whose forward output is each probe module's neuron activation, per layer."""
  return {"llm": [layer.mlp.act_fn for layer in hf.model.language_model.layers],
          "audio": [layer.activation_fn for layer in hf.model.audio_tower.layers]}


def run_hf(hf, batch, masks=None, **kwargs):
  return hf_hooks.run_hf(hf, act_modules(hf), batch, masks, **kwargs)


def audio_positions(batch):
  return positions_where((batch["input_ids"] == AUDIO) & (batch["attention_mask"] == 1))


@pytest.fixture(scope="module")
def plain(pair):
  """One unmasked forward of ours with both modules captured, in-scan GroupStats probes and a
  logit lens at the audio positions (one compilation); HF's forward with recording hooks."""
  from mmneuron_jax.nn.probes import GroupStats
  hf, model, batch = pair
  probe = {k: GroupStats(groups=g, num_groups=2) for k, g in model.token_groups(batch, np.array([0, 1])).items()}
  out = model.apply(model.params, batch, capture=("llm", "audio"), probe=probe,
                    lens=Lens(audio_positions(batch), None, top_k=3))
  return out, run_hf(hf, batch, output_hidden_states=True)


def test_batch_layout(pair):
  _, _, batch = pair
  assert batch["input_features"].shape == (3, 128, 100)
  np.testing.assert_array_equal(batch["feature_attention_mask"].sum(-1), [37, 81, 100])
  np.testing.assert_array_equal((batch["input_ids"] == AUDIO).sum(-1), [9 + 20, 25])
  assert not batch["attention_mask"].all()


def test_logits_match(pair, plain):
  _, _, batch = pair
  out, (ref, _) = plain
  valid = batch["attention_mask"].astype(bool)
  assert out.logits.shape == ref.logits.shape
  assert np.abs(np.asarray(out.logits)[valid] - ref.logits.numpy()[valid]).max() <= TOL


def test_captured_activations_match(pair, plain):
  _, model, batch = pair
  out, (_, rec) = plain
  valid = batch["attention_mask"].astype(bool)
  llm = np.asarray(out.aux["llm"])
  assert llm.shape == (model.probe_modules["llm"][0],) + valid.shape + (model.probe_modules["llm"][1],)
  assert np.abs(llm[:, valid] - rec["llm"][:, valid]).max() <= TOL
  audio = np.asarray(out.aux["audio"])
  assert audio.shape == (model.probe_modules["audio"][0], 3, 50, model.probe_modules["audio"][1])
  assert audio.shape == rec["audio"].shape
  assert np.abs(audio - rec["audio"]).max() <= TOL


def test_masked_forward_matches_hook_zeroing(pair, plain):
  hf, model, batch = pair
  masks = hf_hooks.random_masks(model.probe_modules)
  out = model.apply(model.params, batch, masks=masks)
  ref, _ = run_hf(hf, batch, masks=masks)
  valid = batch["attention_mask"].astype(bool)
  assert np.abs(np.asarray(out.logits)[valid] - ref.logits.numpy()[valid]).max() <= TOL
  assert np.abs(np.asarray(out.logits) - np.asarray(plain[0].logits))[valid].max() > 1e-3  # the mask did something


def test_logit_lens_matches_hf_hidden_states(pair, plain):
  hf, _, batch = pair
  positions = audio_positions(batch)
  out, (ref, _) = plain
  lm = hf.model.language_model
  rows, cols = np.nonzero(positions >= 0)
  for layer in range(len(lm.layers)):
    h = ref.hidden_states[layer + 1]
    with torch.no_grad():
      logits = hf.lm_head(h if layer == len(lm.layers) - 1 else lm.norm(h)).numpy()
    sel = logits[rows, positions[rows, cols]].astype(np.float64)
    logp = sel - sel.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    entropy = -(np.exp(logp) * logp).sum(-1)
    assert np.abs(np.asarray(out.lens["entropy"][layer])[rows, cols] - entropy).max() <= TOL, layer


@pytest.mark.parametrize("masked", [False, True])
def test_greedy_generation_matches_hf(pair, masked):
  """Left-padded prompts, KV cache; masks (both modules) at prefill and every decode step."""
  hf, model, _ = pair
  batch = make_batch(hf.config, "left")
  masks = hf_hooks.random_masks(model.probe_modules, seed=3) if masked else None
  new = 6
  ours = model.generate(model.params, batch, max_new_tokens=new, masks=masks, eos_token_id=-1)
  ref = hf_hooks.generate(hf, act_modules(hf), batch, new, masks, pad_token_id=PAD)
  np.testing.assert_array_equal(ours, ref[:, batch["input_ids"].shape[1]:])


def test_token_groups_and_miner_masks(pair):
  hf, model, batch = pair
  groups = model.token_groups(batch, np.array([3, 5]))
  am = batch["attention_mask"].astype(bool)
  np.testing.assert_array_equal(groups["llm"], np.where(am, np.array([3, 5])[:, None], -1))
  # audio i of row r counts its valid encoder frames (f - 1) // 2 + 1 for r's group
  expected = np.full((3, 50), -1)
  for i, (row, frames) in enumerate(zip([0, 0, 1], [37, 81, 100])):
    expected[i, :(frames - 1) // 2 + 1] = [3, 5][row]
  np.testing.assert_array_equal(groups["audio"], expected)
  audio_only = model.token_groups(batch, np.array([3, 5]), media_only=True)["llm"]
  np.testing.assert_array_equal(audio_only >= 0, batch["input_ids"] == AUDIO)
  # MINER stage 1: the family's id sets equal the paper's, and exercise every modality here.
  cfg = model.module.cfg
  by_family = np.asarray(miner.token_modality_masks(batch["input_ids"], qwen2_audio.TOKEN_IDS, batch["attention_mask"]))
  by_config = np.asarray(miner.token_modality_masks(batch["input_ids"], None, batch["attention_mask"],
                                                    **cfg.modality_token_ids))
  np.testing.assert_array_equal(by_family, by_config)
  ids = batch["input_ids"]
  special = np.isin(ids, [IM_START, IM_END, BOS, EOS]) & am
  np.testing.assert_array_equal(by_family[miner.MODALITY_INDEX["audio"]], (ids == AUDIO) & am)
  np.testing.assert_array_equal(by_family[miner.MODALITY_INDEX["special"]], special)
  np.testing.assert_array_equal(by_family[miner.MODALITY_INDEX["text"]], am & ~special & (ids != AUDIO))
  assert all(by_family[miner.MODALITY_INDEX[m]].any() for m in ("text", "special", "audio"))


def test_probes_match_captured_activations(pair, plain):
  """In-scan GroupStats over the [N, P] audio layout and the [B, T] LLM layout equal the
  statistics of the captured activations."""
  _, model, batch = pair
  groups = model.token_groups(batch, np.array([0, 1]))
  out, _ = plain
  for name in ("llm", "audio"):
    acts = np.asarray(out.aux[name])
    for g in range(2):
      sel = groups[name] == g
      np.testing.assert_array_equal(np.asarray(out.probe[name]["count"])[:, g], (acts[:, sel] > 0).sum(1))
      np.testing.assert_allclose(np.asarray(out.probe[name]["sum"])[:, g], acts[:, sel].sum(1), atol=1e-4)
      assert (np.asarray(out.probe[name]["tokens"])[:, g] == sel.sum()).all()


def test_text_only_forward_matches_hf(pair):
  hf, model, batch = pair
  text = {"input_ids": batch["input_ids"][:, :4], "attention_mask": np.ones((2, 4), np.int64)}
  out = model.apply(model.params, text)
  ref, _ = run_hf(hf, text)
  assert np.abs(np.asarray(out.logits) - ref.logits.numpy()).max() <= TOL


def tiny_tokenizer():
  """A word-level fast tokenizer holding the Qwen2 special tokens at their real ids."""
  from tokenizers import Tokenizer, models, pre_tokenizers
  specials = {"<|endoftext|>": PAD, "<|im_start|>": IM_START, "<|im_end|>": IM_END, "<|AUDIO|>": AUDIO,
              "<|audio_bos|>": BOS, "<|audio_eos|>": EOS}
  vocab = {w: i for i, w in enumerate(["what", "is", "this", "sound", "?", "say", "it", "again", "user"])}
  vocab.update(specials)
  tok = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
  tok.pre_tokenizer = pre_tokenizers.Whitespace()
  tok.add_special_tokens(list(specials))
  return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|endoftext|>", eos_token="<|im_end|>")


@pytest.mark.parametrize("side", ["right", "left"])
def test_input_builder_equals_hf_processor(side):
  tok = tiny_tokenizer()
  tok.padding_side = side
  extractor = qwen2_audio_inputs.feature_extractor(chunk_length=1)
  proc = transformers.Qwen2AudioProcessor(feature_extractor=extractor, tokenizer=tok)
  prompts = ["<|im_start|>user <audio> what is this sound ? <audio> say it again<|im_end|>",
             "<|im_start|>user <audio> what is this ?<|im_end|>"]
  audios = waveforms()
  hf_text = [p.replace("<audio>", "<|audio_bos|><|AUDIO|><|audio_eos|>") for p in prompts]
  ref = proc(text=hf_text, audio=audios, return_tensors="np", padding=True)
  ours = qwen2_audio_inputs.Qwen2AudioInputs(tok, extractor, tiny_config().to_dict())(
      prompts, [audios[:2], audios[2:]], padding_side=side)
  assert set(ours) == {"input_ids", "attention_mask", "input_features", "feature_attention_mask"} <= set(ref)
  for key in ours:
    np.testing.assert_array_equal(ours[key], ref[key], err_msg=key)
    assert ours[key].dtype == ref[key].dtype, key
  np.testing.assert_array_equal(qwen2_audio_inputs.num_audio_tokens(ref["feature_attention_mask"].sum(-1)),
                                [9, 20, 25])


def test_bad_inputs_raise_clear_errors(pair):
  _, model, batch = pair
  with pytest.raises(ValueError, match="feature_attention_mask"):
    model.prepare_fn({k: v for k, v in batch.items() if k != "feature_attention_mask"})
  cut = dict(batch, feature_attention_mask=batch["feature_attention_mask"].copy())
  cut["feature_attention_mask"][0, 30:] = 0
  with pytest.raises(ValueError, match="audio tokens"):
    model.prepare_fn(cut)
  with pytest.raises(ValueError, match="input_features has shape"):
    model.prepare_fn(dict(batch, input_features=batch["input_features"][:, :, :60]))
  np.testing.assert_array_equal(model.prepare_fn(batch)["audio_rows"], [0, 0, 1])


def test_unsupported_config_is_rejected():
  from mmneuron_jax.convert.checks import UnsupportedConfigError
  config = tiny_config().to_dict()
  config["text_config"]["use_sliding_window"] = True
  config["text_config"]["layer_types"] = ["sliding_attention"] * 2
  with pytest.raises(UnsupportedConfigError, match="layer_types"):
    qwen2_audio.Qwen2AudioConfig.from_hf(config)
  config = tiny_config().to_dict()
  config["audio_config"]["activation_function"] = "swish_magic"
  with pytest.raises(UnsupportedConfigError, match="activation_function"):
    qwen2_audio.Qwen2AudioConfig.from_hf(config)


def hub_config():
  """The hub's config.json of Qwen2-Audio-7B-Instruct: partial sub-configs (HF fills Qwen2 defaults)."""
  return {"model_type": "qwen2_audio", "audio_token_index": 151646, "ignore_index": -100,
          "audio_config": {"model_type": "qwen2_audio_encoder", "num_mel_bins": 128, "encoder_layers": 32,
                           "encoder_attention_heads": 20, "encoder_ffn_dim": 5120, "d_model": 1280,
                           "max_source_positions": 1500, "activation_function": "gelu", "scale_embedding": False},
          "text_config": {"model_type": "qwen2", "bos_token_id": 151643, "eos_token_id": 151645,
                          "intermediate_size": 11008, "max_position_embeddings": 8192, "rms_norm_eps": 1e-05,
                          "rope_theta": 10000, "sliding_window": 32768, "use_mrope": False, "vocab_size": 156032}}


def test_full_size_param_count_equals_hf():
  """jax.eval_shape of the Qwen2-Audio-7B config gives HF's parameter count (no weights)."""
  import jax
  from mmneuron_jax.nn.policy import Policy
  hub = hub_config()
  cfg = qwen2_audio.Qwen2AudioConfig.from_hf(hub)
  assert cfg.probe_modules == {"llm": (32, 11008), "audio": (32, 5120)}
  assert cfg.text.num_kv_heads == 32 and cfg.text.qkv_bias and cfg.text.rms_norm_eps == 1e-5
  ids = cfg.modality_token_ids
  assert ids["special_ids"] == qwen2_audio.TOKEN_IDS["special_ids"]
  assert ids["audio_ids"] == qwen2_audio.TOKEN_IDS["audio_ids"]
  args, kwargs = qwen2_audio.init_inputs(cfg)
  module = qwen2_audio.Qwen2Audio(cfg=cfg, policy=Policy())
  shapes = jax.eval_shape(lambda key: module.init(key, *args, **kwargs)["params"], jax.random.PRNGKey(0))
  ours = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(shapes))
  with torch.device("meta"):
    hf = transformers.Qwen2AudioForConditionalGeneration(transformers.Qwen2AudioConfig(**hub))
  assert ours == sum(p.numel() for p in hf.parameters())
  assert 8.0e9 < ours < 8.8e9


def test_in_memory_layout_loads_same_params(pair, tmp_path):
  """A checkpoint with transformers-v5 in-memory names ('model.language_model.*',
  'model.audio_tower.*', 'lm_head.weight') converts to the same params."""
  import json

  import jax
  from safetensors.torch import save_file
  hf, model, _ = pair
  state = {k: v.detach().clone().contiguous() for k, v in hf.state_dict().items()}
  assert any(k.startswith("model.audio_tower.") for k in state) and "lm_head.weight" in state
  save_file(state, str(tmp_path / "model.safetensors"))
  (tmp_path / "config.json").write_text(json.dumps(hf.config.to_dict()))
  other = mmneuron_jax.load_hf(str(tmp_path))
  same = jax.tree_util.tree_map(lambda a, b: bool((np.asarray(a) == np.asarray(b)).all()), model.params, other.params)
  assert all(jax.tree_util.tree_leaves(same))
