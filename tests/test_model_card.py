"""The first lines of a report name the model it ran; a random-weight demo points to a trained demo
only for the families that have one."""
import ml_collections

from mmneuron_jax.tasks.common import model_card
from mmneuron_jax.tasks.train_demo import recipes


def _card(tmp_path, **model):
  return model_card.describe(ml_collections.ConfigDict({"model": model}), str(tmp_path))[0]


def test_random_demo_points_to_a_trained_demo_only_where_one_exists(tmp_path):
  assert "qwen2_vl" in recipes.RECIPES and "qwen2_5_vl" not in recipes.RECIPES
  with_trained = _card(tmp_path, family="qwen2_vl", demo_weights="random")
  assert with_trained.startswith("**Model: random-weight tiny demo**")
  assert "`model.demo_weights=trained` runs a qwen2_vl demo model" in with_trained
  without = _card(tmp_path, family="qwen2_5_vl", demo_weights="random")
  assert "demo_weights=trained" not in without and "there is no trained qwen2_5_vl demo" in without


def test_real_checkpoint_card_names_path_and_config_digest(tmp_path):
  (tmp_path / "config.json").write_text('{"model_type": "llava_next"}')
  card = _card(tmp_path, path=str(tmp_path))
  assert card.startswith(f"**Model: real checkpoint** `{tmp_path}` (llava_next; config.json sha256 `")
