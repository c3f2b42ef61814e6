"""A tiny InstructBLIP (Vicuna-style) checkpoint in HF format, built deterministically with numpy
(no torch, no download): config.json, model.safetensors (hub weight names), the LLM's word-level
tokenizer, a BERT-style word-level Q-Former tokenizer in `qformer_tokenizer/`, and
preprocessor_config.json (BlipImageProcessor). It loads through the same `load_hf` path as
Salesforce/instructblip-vicuna-7b, and HF's InstructBlipForConditionalGeneration reads it too.
"""
import os

from mmneuron_jax.data.synthetic import demo_checkpoint as ckpt, demo_llava_next

IMAGE_SIZE = 28
PATCH = 7
NUM_QUERY = 8
QFORMER_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
QFORMER_MAX_LEN = 128
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def demo_config(vocab_size: int, qformer_vocab_size: int, image_token_id: int, text_layers=4, vision_layers=3,
                qformer_layers=3) -> dict:
  """Q-Former cross-attention every 2 layers, as in the 7B model (layers 0 and 2 here)."""
  return {
      "architectures": ["InstructBlipForConditionalGeneration"], "model_type": "instructblip",
      "num_query_tokens": NUM_QUERY, "image_token_index": image_token_id, "use_decoder_only_language_model": True,
      "tie_word_embeddings": False,
      "text_config": ckpt.llama_text_config(vocab_size, text_layers, kv_heads=4, rms_norm_eps=1e-6),
      "vision_config": {"model_type": "instructblip_vision_model", "hidden_size": 48, "intermediate_size": 80,
                        "num_hidden_layers": vision_layers, "num_attention_heads": 4, "image_size": IMAGE_SIZE,
                        "patch_size": PATCH, "hidden_act": "gelu", "layer_norm_eps": 1e-6, "qkv_bias": True},
      "qformer_config": {"model_type": "instructblip_qformer", "vocab_size": qformer_vocab_size, "hidden_size": 32,
                         "intermediate_size": 64, "num_hidden_layers": qformer_layers, "num_attention_heads": 4,
                         "max_position_embeddings": QFORMER_MAX_LEN, "cross_attention_frequency": 2,
                         "encoder_hidden_size": 48, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
                         "pad_token_id": 0},
  }


def _linear(prefix, d_out, d_in, bias=True):
  s = {prefix + ".weight": (d_out, d_in)}
  if bias:
    s[prefix + ".bias"] = (d_out,)
  return s


def _layernorm(prefix, d):
  return {prefix + ".weight": (d,), prefix + ".bias": (d,)}


def hf_state_shapes(config: dict) -> dict:
  """HF tensor name -> shape for an InstructBLIP (Llama decoder) config, hub / save_pretrained layout."""
  t, v, q = config["text_config"], config["vision_config"], config["qformer_config"]
  d = t["hidden_size"]
  s = {"language_model.lm_head.weight": (t["vocab_size"], d),
       "language_model.model.embed_tokens.weight": (t["vocab_size"], d), "language_model.model.norm.weight": (d,),
       **ckpt.decoder_layer_shapes("language_model.model.layers.", t)}
  vd, vf, n_pos = v["hidden_size"], v["intermediate_size"], (v["image_size"] // v["patch_size"]) ** 2 + 1
  s.update({"vision_model.embeddings.class_embedding": (1, 1, vd),
            "vision_model.embeddings.patch_embedding.weight": (vd, 3, v["patch_size"], v["patch_size"]),
            "vision_model.embeddings.patch_embedding.bias": (vd,),
            "vision_model.embeddings.position_embedding": (1, n_pos, vd),
            **_layernorm("vision_model.post_layernorm", vd)})
  for i in range(v["num_hidden_layers"]):
    p = f"vision_model.encoder.layers.{i}."
    s.update({**_linear(p + "self_attn.qkv", 3 * vd, vd), **_linear(p + "self_attn.projection", vd, vd),
              **_linear(p + "mlp.fc1", vf, vd), **_linear(p + "mlp.fc2", vd, vf),
              **_layernorm(p + "layer_norm1", vd), **_layernorm(p + "layer_norm2", vd)})
  qd, qf = q["hidden_size"], q["intermediate_size"]
  s.update({"query_tokens": (1, config["num_query_tokens"], qd),
            "qformer.embeddings.word_embeddings.weight": (q["vocab_size"], qd),
            "qformer.embeddings.position_embeddings.weight": (q["max_position_embeddings"], qd),
            **_layernorm("qformer.embeddings.layernorm", qd), **_linear("language_projection", d, qd)})
  for i in range(q["num_hidden_layers"]):
    p = f"qformer.encoder.layer.{i}."
    blocks = [("attention", qd)] + ([("crossattention", vd)] if i % q["cross_attention_frequency"] == 0 else [])
    for name, kv_in in blocks:
      s.update({**_linear(p + f"{name}.attention.query", qd, qd), **_linear(p + f"{name}.attention.key", qd, kv_in),
                **_linear(p + f"{name}.attention.value", qd, kv_in), **_linear(p + f"{name}.output.dense", qd, qd),
                **_layernorm(p + f"{name}.output.LayerNorm", qd)})
    for ffn, out in (("intermediate", "output"), ("intermediate_query", "output_query")):
      s.update({**_linear(p + f"{ffn}.dense", qf, qd), **_linear(p + f"{out}.dense", qd, qf),
                **_layernorm(p + f"{out}.LayerNorm", qd)})
  return s


EMBEDDINGS = r"(query_tokens|position_embeddings\.weight|word_embeddings\.weight)$"
# EVA's class token and positions: as large as a patch's content, so that 28-pixel, nearly uniform demo
# images (white pages, dark scans) still give neurons that fire at some positions only (with N(0, 0.5)
# too many vision neurons fire on every token of a domain, p = 1 ties DAPE's 95% threshold, none is picked).
VISION_POSITIONS = r"vision_model\.embeddings\.(class_embedding|position_embedding)$"
NORM_WEIGHT = r"(norm|layernorm|LayerNorm|layer_norm\d)\.weight$"


def random_state(config: dict, seed: int = 0) -> dict:
  """Deterministic random weights: N(0, 1/sqrt(fan_in)) matrices, norms near 1, small biases,
  N(0, 0.5) Q-Former queries and embeddings, N(0, 2) EVA class token and positions."""
  rules = [(VISION_POSITIONS, lambda rng, shape: 2.0 * rng.standard_normal(shape)),
           (EMBEDDINGS, lambda rng, shape: 0.5 * rng.standard_normal(shape))]
  return ckpt.random_state(hf_state_shapes(config), seed, norm=NORM_WEIGHT, rules=rules)


def write_qformer_tokenizer(path: str, vocab_words: list[str]) -> int:
  """A BERT-style word-level tokenizer (lower-cased, `[CLS] ... [SEP]`) in `path`; returns its size."""
  from tokenizers import normalizers, pre_tokenizers, processors
  vocab = ckpt.write_word_tokenizer(
      path, QFORMER_SPECIAL + vocab_words, QFORMER_SPECIAL,
      {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
       "mask_token": "[MASK]", "do_lower_case": True, "model_max_length": QFORMER_MAX_LEN, "padding_side": "right"},
      unk="[UNK]", normalizer=normalizers.BertNormalizer(lowercase=True),
      pre_tokenizer=pre_tokenizers.BertPreTokenizer(),
      post_processor=processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                   special_tokens=[("[CLS]", 2), ("[SEP]", 3)]))
  return len(vocab)


def write_image_processor(path: str):
  ckpt.write_json(os.path.join(path, "preprocessor_config.json"), {
      "image_processor_type": "BlipImageProcessor", "size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE},
      "do_resize": True, "resample": 3, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
      "image_mean": CLIP_MEAN, "image_std": CLIP_STD, "do_convert_rgb": True})
  ckpt.write_json(os.path.join(path, "processor_config.json"),
                  {"processor_class": "InstructBlipProcessor", "num_query_tokens": NUM_QUERY})


def build_demo_checkpoint(path: str, texts, seed: int = 0) -> str:
  """Write the tiny InstructBLIP for the vocabulary of `texts` (both tokenizers). Returns `path`."""
  os.makedirs(path, exist_ok=True)
  words = demo_llava_next.word_vocab(texts)
  image_id = demo_llava_next.write_tokenizer(path, words)
  qformer_vocab = write_qformer_tokenizer(os.path.join(path, "qformer_tokenizer"), words)
  config = demo_config(ckpt.padded_vocab_size(image_id + 1), qformer_vocab, image_id)
  ckpt.save_checkpoint(path, random_state(config, seed), config)
  write_image_processor(path)
  return path
