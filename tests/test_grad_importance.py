"""Gradient importance (`analysis/importance.py`) on a tiny LLaVA-NeXT (fp32, CPU).

(a) Finite differences. Our forward is float32 only (x64 would not help: norms, attention
    scores and logits are computed in float32 by design), so single-entry central differences
    at eps=1e-3 are dominated by rounding (loss ~46, ulp ~4e-6: ~10% error on gradients ~0.02).
    Instead we perturb a few entries at once: the top-4 |g| entries of each module along sign(g),
    eps=1e-2, central difference vs <g, v>; relative tol 1e-2 (observed <= 1e-3). Also: the
    rematerialised and plain scans give the same gradients.
(b) HF PyTorch autograd: forward hooks multiply each HF neuron activation by a torch ones-mask
    (requires_grad) and the same answer NLL is backpropagated; mask.grad equals ours for every
    neuron of llm, vision and projector (atol 1e-6 + rtol 1e-3; observed max-abs <= 4e-8 on
    gradients up to 0.11).
"""
import numpy as np
import pytest
import torch

import hf_tiny
import jax
import jax.numpy as jnp
import mmneuron_jax
from mmneuron_jax.analysis.importance import answer_nll, grad_importance

MODULES = ("llm", "vision", "projector")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("llava_grad"))
  hf = hf_tiny.build_llava_next(path, kv_heads=2)
  model = mmneuron_jax.load_hf(path)
  batch = hf_tiny.llava_next_batch(hf.config, [(40, 90), (60, 50)], [5, 9])
  am = batch["attention_mask"].astype(bool)
  answer = np.zeros_like(am)
  for b, n in enumerate(am.sum(1)):
    answer[b, n - 4:n] = True  # the last 4 valid tokens of each row are the answer
  grads = grad_importance(model, model.params, batch, answer, modules=MODULES)
  return hf, model, batch, answer, {k: np.asarray(v) for k, v in grads.items()}


def test_shapes_and_remat(setup):
  _, model, batch, answer, grads = setup
  for name in MODULES:
    assert grads[name].shape == tuple(model.probe_modules[name]) and grads[name].dtype == np.float32
    assert np.abs(grads[name]).max() > 1e-3
  plain = grad_importance(model, model.params, batch, answer, modules=("llm",), remat=False)
  np.testing.assert_allclose(np.asarray(plain["llm"]), grads["llm"], atol=1e-7, rtol=1e-5)


def test_finite_differences(setup):
  _, model, batch, answer, grads = setup
  db = model.device_batch(batch)
  fwd = model.forward_step()
  loss = jax.jit(lambda masks: answer_nll(fwd(model.params, db, masks).logits, db["input_ids"], jnp.asarray(answer)))
  ones = {name: jnp.ones(model.probe_modules[name], jnp.float32) for name in MODULES}
  eps = 1e-2
  for name in MODULES:
    g = grads[name]
    top = np.argsort(-np.abs(g).ravel(), kind="stable")[:4]
    v = np.zeros(g.size, np.float32)
    v[top] = np.sign(g.ravel()[top])
    v = v.reshape(g.shape)
    fd = (float(loss({**ones, name: ones[name] + eps * v})) - float(loss({**ones, name: ones[name] - eps * v}))) / (2 * eps)
    expected = float((g * v).sum())
    assert abs(fd - expected) <= 1e-2 * abs(expected), (name, fd, expected)


def test_equals_hf_autograd(setup):
  hf, model, batch, answer, grads = setup
  inner = hf.model
  mods = {"llm": [layer.mlp.act_fn for layer in inner.language_model.layers],
          "vision": [layer.mlp.activation_fn for layer in inner.vision_tower.encoder.layers],
          "projector": [inner.multi_modal_projector.act]}
  masks, handles = {}, []
  for name, layers in mods.items():
    masks[name] = [torch.ones(model.probe_modules[name][1], requires_grad=True) for _ in layers]
    for mod, m in zip(layers, masks[name]):
      handles.append(mod.register_forward_hook(lambda _, __, out, m=m: out * m))
  try:
    logits = hf(**{k: torch.tensor(v) for k, v in batch.items()}).logits
  finally:
    for h in handles:
      h.remove()
  ids = torch.tensor(batch["input_ids"])
  logp = torch.log_softmax(logits[:, :-1].double(), dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
  nll = -(logp * torch.tensor(answer[:, 1:], dtype=logp.dtype)).sum()
  nll.backward()
  for name in MODULES:
    # None: no path to the loss (the last CLIP layer, as vision_feature_layer=-2 reads the one before)
    ref = torch.stack([torch.zeros_like(m) if m.grad is None else m.grad for m in masks[name]]).numpy()
    np.testing.assert_allclose(grads[name], ref, atol=1e-6, rtol=1e-3, err_msg=name)
    assert np.abs(ref).max() > 1e-3


def test_bad_inputs(setup):
  _, model, batch, answer, _ = setup
  with pytest.raises(ValueError, match="position 0"):
    grad_importance(model, model.params, batch, np.ones_like(answer))
  with pytest.raises(ValueError, match="shape"):
    grad_importance(model, model.params, batch, answer[:, :-1])
  with pytest.raises(KeyError, match="unknown module"):
    grad_importance(model, model.params, batch, answer, modules=("audio",))
