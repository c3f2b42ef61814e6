"""report.md of a train_demo run: the model it wrote, held-out accuracy per domain, loss curve."""
import os

import numpy as np

from mmneuron_jax.tasks.common.plots import finish, new_figure
from mmneuron_jax.tasks.common.tables import md_table
from mmneuron_jax.data.synthetic import skills as demo_skills


def plot_losses(losses, path: str | None = None, window: int = 20):
  """Training loss per step and its running mean -> Figure (PNG to `path`)."""
  from matplotlib.ticker import MaxNLocator
  fig = new_figure(7, 3.6)
  ax = fig.subplots()
  steps = np.arange(1, len(losses) + 1)
  ax.plot(steps, losses, color="0.7", lw=0.8, label="per step")
  if len(losses) >= window:
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    ax.plot(steps[window - 1:], smooth, color="C0", lw=2, label=f"mean of {window} steps")
  ax.set(xlabel="step", ylabel="answer-token cross-entropy (nats)", yscale="log",
         title="train_demo: training loss")
  ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  ax.legend()
  return finish(fig, path, dpi=110)


def write(workdir: str, out_dir: str, result: dict) -> str:
  os.makedirs(os.path.join(workdir, "plots"), exist_ok=True)
  plot_losses(result["losses"], os.path.join(workdir, "plots", "loss.png"))
  r = result["recipe"]
  per = result.get("heldout_primary", {})
  # MINER recipes record each dataset's chance level; the MMNeuron skills domains: 1 / answers.
  chance = result.get("chance") or {d: 1.0 / len(demo_skills.answer_space(d)) for d in per}
  unit = "dataset" if result.get("chance") else "domain"
  losses = result["losses"]
  lines = [f"# train_demo: {r['family']}", "",
           f"**Model: trained tiny demo** ({r['family']}) written to `{out_dir}` (HF format: model.safetensors, "
           f"config.json, tokenizer, preprocessor_config.json; `train_demo.json` holds this record). Recipe "
           f"`{result['digest']}`, weights sha256 `{result['weights_sha256']}`; held-out mean primary metric "
           f"**{result.get('heldout_mean', float('nan')):.3f}**.", "",
           "## Held-out accuracy", "",
           f"Greedy answers on the 'val' split ({result['n_val']} samples, disjoint from the {result['n_train']} "
           "'train' ones), scored with the " + ("MINER demo metric of each dataset:" if unit == "dataset" else
                                              "MMNeuron primary metric of each domain:"), "",
           md_table([unit, "primary", "chance"], [[d, v, "-" if chance[d] is None else chance[d]]
                                                   for d, v in per.items()]), "",
           "## Training", "",
           f"{r['steps']} Adam steps of {r['batch_size']} rows, lr {r['lr']} (warmup {r['warmup']}, cosine to 10%), "
           f"float32 on {result.get('backend', '?')}; loss first 20 steps {np.mean(losses[:20]):.3f}, "
           f"last 20 steps {np.mean(losses[-20:]):.3f} nats.", "",
           "![loss](plots/loss.png)", "",
           "Seconds: " + ", ".join(f"{k} {v}" for k, v in result["seconds"].items()) + ".", "",
           "Recipe: " + ", ".join(f"`{k}={v}`" for k, v in r.items()) + ".", ""]
  path = os.path.join(workdir, "report.md")
  with open(path, "w") as f:
    f.write("\n".join(lines))
  return path
