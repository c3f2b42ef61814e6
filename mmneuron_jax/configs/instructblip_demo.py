"""MMNeuron on the embedded demo with InstructBLIP: a tiny InstructBLIP (EVA ViT -> Q-Former ->
Vicuna-style decoder, built deterministically through the HF conversion path) and the same
synthetic five-domain image set and sample counts as the LLaVA-NeXT demo (mmneuron_jax/configs/llava_next_demo.py;
its dape.top_rate 0.05 also suits this tiny model, where 1% would select 1-4 neurons per module).
Minutes on a CPU.

COMMAND: python -m mmneuron_jax --config=instructblip_demo --workdir=runs/instructblip_demo

Side by side with the LLaVA-NeXT demo (after running mmneuron_jax/configs/llava_next_demo.py):
  python -m mmneuron_jax --config=instructblip_demo --workdir=runs/instructblip_demo \
    --config.compare_with="('runs/llava_next_demo',)"
"""
from mmneuron_jax.configs import instructblip_7b, llava_next_demo, mmneuron_base


def get_config(arg=None):
  c = llava_next_demo.get_config()
  instructblip_7b.instructblip_fields(c)
  c.model.id = "demo/tiny-instructblip"
  c.model.demo = "instructblip"
  # The bundled trained InstructBLIP (mmneuron_jax/configs/train_demo_instructblip.py), on the held-out skills split
  # (inherited); `--config.model.demo_weights=random --config.data.source=demo` runs the untrained one.
  return mmneuron_base.apply_arg(c, arg)
