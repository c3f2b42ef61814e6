"""MMNeuron on the embedded demo with InstructBLIP: a tiny InstructBLIP (EVA ViT -> Q-Former ->
Vicuna-style decoder, built deterministically through the HF conversion path) and the same
synthetic five-domain image set as the LLaVA-NeXT demo. Minutes on a CPU.

COMMAND: python launch/main.py --config=configs/instructblip_demo.py --workdir=runs/instructblip_demo

Side by side with the LLaVA-NeXT demo (after running configs/llava_next_demo.py):
  python launch/main.py --config=configs/instructblip_demo.py --workdir=runs/instructblip_demo \
    --config.compare_with="('runs/llava_next_demo',)"
"""
from configs import instructblip_7b, mmneuron_base


def get_config(arg=None):
  c = mmneuron_base.get_config()
  instructblip_7b.instructblip_fields(c)
  c.model.id = "demo/tiny-instructblip"
  c.model.demo = "instructblip"
  c.data.source = "demo"
  c.data.n_per_domain = 16
  c.stats.max_samples_per_domain = 12
  c.stats.vision_tokens_per_domain = 0
  c.stats.batch_size = 4
  c.stats.commit_every = 2
  c.dape.top_rate = 0.05  # the tiny model has few neurons; 1% would select 1-4 per module
  c.eval.n_per_domain = 4
  c.eval.batch_size = 4
  c.eval.max_new_tokens = 6
  c.lens.n_per_domain = 4
  return mmneuron_base.apply_arg(c, arg)
