"""The ViT patch convolution shared by the CLIP, SigLIP and EVA towers (`clip.patch_embed`) equals
torch's conv2d with stride = patch size, also when the image side is not a multiple of the patch
(SigLIP's 384 / 14: the conv drops the last pixels), and refuses an image of another size."""
import numpy as np
import pytest
import torch

from mmneuron_jax.models.clip import patch_embed
from mmneuron_jax.nn.policy import Policy


@pytest.mark.parametrize("image_size,patch", [(28, 7), (30, 7)])
def test_patch_embed_equals_torch_conv(image_size, patch):
  rng = np.random.default_rng(0)
  pixels = rng.standard_normal((2, 3, image_size, image_size)).astype(np.float32)
  weight = rng.standard_normal((5, 3, patch, patch)).astype(np.float32)  # torch OIHW
  want = torch.nn.functional.conv2d(torch.from_numpy(pixels), torch.from_numpy(weight), stride=patch)
  want = want.flatten(2).transpose(1, 2).numpy()  # [N, P, D], patches row-major as HF
  got = np.asarray(patch_embed(pixels, weight.transpose(2, 3, 1, 0), image_size, Policy()))
  assert got.shape == want.shape == (2, (image_size // patch) ** 2, 5)
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_patch_embed_refuses_another_image_size():
  pixels = np.zeros((1, 3, 32, 28), np.float32)
  with pytest.raises(ValueError, match=r"takes \[N, 3, 28, 28\] \(no position interpolation\)"):
    patch_embed(pixels, np.zeros((7, 7, 3, 5), np.float32), 28, Policy())
