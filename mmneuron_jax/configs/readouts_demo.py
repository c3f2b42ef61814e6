"""Readouts on the embedded demo: tuned lens, layer probes and learned masks on the tiny
LLaVA-NeXT (built deterministically) and the synthetic five-domain set. Minutes on a CPU.

COMMAND: python -m mmneuron_jax --config=readouts_demo --workdir=runs/readouts_demo

The same on the tiny InstructBLIP (probes of llm, vision, qformer_text, qformer_query via '*:mean:domain'):
  python -m mmneuron_jax --config=readouts_demo:model.demo=instructblip,model.id=demo/tiny-instructblip \
    --workdir=runs/readouts_instructblip_demo

Compare the learned masks with an MMNeuron run's DAPE sets:
  python -m mmneuron_jax --config=readouts_demo --workdir=runs/readouts_demo \
    --config.compare_sets_dir=runs/llava_next_demo
"""
import ml_collections

from mmneuron_jax.configs import mmneuron_base


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.task = "readouts"
  c.seed = 0
  c.stages = ("tuned_lens", "probes", "masks")
  c.model = ml_collections.ConfigDict(dict(path="", id="demo/tiny-llava-next", dtype="float32", compute_dtype="",
                                           seed=0, demo="llava_next"))
  c.data = ml_collections.ConfigDict(dict(source="demo", path="", image_root="", n_per_domain=16, seed=0,
                                          domains=tuple(mmneuron_base.DOMAINS)))
  c.planted = ml_collections.ConfigDict(dict(hues=("red", "yellow", "green", "cyan", "blue"), llm_layer=2,
                                             per_domain=3, vision_layer=1))
  # 'stats' ("<image>\n{question}", the statistics prompt) or 'eval' (the family's evaluation prompt,
  # eval.template / eval.style; '' = the family default, e.g. Vicuna v1 for LLaVA-NeXT).
  c.prompt = "stats"
  c.eval = ml_collections.ConfigDict(dict(template="", style=""))
  c.batch_size = 4
  c.heldout_frac = 0.25  # held-out samples per domain (tuned lens, probes), deterministic in `seed`
  c.tuned_lens = ml_collections.ConfigDict(dict(n_per_domain=8, positions_per_sample=24, steps=200, lr=2e-3,
                                                batch_size=256, top_k=10, name="tuned_lens", load=""))
  # specs: 'features:pool:label' (features 'hidden', a probe module or '*' = every probe module of the model;
  # pool token|mean; label domain|modality)
  c.probes = ml_collections.ConfigDict(dict(
      specs=("hidden:mean:domain", "hidden:token:modality", "*:mean:domain"),
      n_per_domain=8, positions_per_sample=16, steps=300, lr=0.05, l2=1e-3, control_repeats=3, threshold=0.95,
      max_plot_points=600))
  c.masks = ml_collections.ConfigDict(dict(modules=("llm",), n_per_domain=4, batch_size=0, steps=60, lr=0.2,
                                           keep_weight=1.0, l0_weight=0.02, init=-1.0, remat=True,
                                           eval_n_per_domain=4, generate=True, max_new_tokens=4))
  c.compare_sets_dir = ""  # an MMNeuron run dir (its neurons/<module>.json): overlap, size, effect
  return mmneuron_base.apply_arg(c, arg)
