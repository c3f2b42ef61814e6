"""The optional MINER stages after selection (config.stages), run by `tasks/miner.py`:

  sweep       the authors' ratio / weight / strategy grids with deactivation, and the sample-count
              convergence, from the stored stage-2 sums (`tasks/miner/sweep.py`)
  last_token  Finding III: last-token attention mass per modality and layer, with each modality's
              neurons off (`tasks/miner/last_token.py`)
  semantics   Finding IV: semantic probing / telomeres as nearest-neighbour shares of token states
              between modalities per layer (`tasks/miner/semantics.py`)

Each adds a section to report.md and its own JSON file.
"""
from mmneuron_jax.io import paths
from mmneuron_jax.tasks.miner import last_token as miner_last_token, semantics as miner_semantics, sweep as miner_sweep

STAGES = ("scores", "select", "deactivate", "sweep", "last_token", "semantics", "atlas")


def check_stages(stages) -> None:
  bad = [s for s in stages if s not in STAGES]
  if bad:
    raise ValueError(f"config.stages: unknown stage(s) {bad}; expected a subset of {list(STAGES)}")
  later = [s for s in stages if s in STAGES[3:]]
  if later and "select" not in stages:
    raise ValueError(f"config.stages: {later} need the 'select' stage (they use the selected sets)")


def run(workdir, config, *, model, params, inputs, samples, originals, totals, stored, ids, names, selected, sets,
        layer_min, results, sampling=None) -> list:
  """Run the requested optional stages -> report lines (appended to report.md by the caller).
  totals: the stage-2 sums of the datasets the run aggregated (its stage 3); samples: every dataset (the
  evaluation sets); sampling: the run's decoding settings (`deactivation.evaluate`)."""
  lines = []
  if "sweep" in config.stages:
    lines += miner_sweep.run(workdir, config, model=model, params=params, inputs=inputs, samples=samples,
                             originals=originals, totals=totals, stored=stored, final=selected, final_names=names,
                             layer_min=layer_min, results=results, sampling=sampling)
  if "last_token" in config.stages:
    last = miner_last_token.run(workdir, config, model=model, params=params, inputs=inputs, samples=samples, ids=ids,
                                stored=stored, selected=selected, names=names, layer_min=layer_min)
    lines += miner_last_token.section(workdir, last)
  if "semantics" in config.stages:
    res = miner_semantics.run(workdir, config, model=model, params=params, inputs=inputs, samples=samples, ids=ids)
    lines += miner_semantics.section(workdir, res)
  return lines


def append_report(path: str, lines: list) -> str:
  """report.md + the optional stages' lines, rewritten whole (an object store cannot append)."""
  if lines:
    with paths.open(path) as f:
      text = f.read()
    with paths.open(path, "w") as f:
      f.write(text + "\n" + "\n".join(lines) + "\n")
  return path
