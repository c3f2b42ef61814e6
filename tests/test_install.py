"""The package as a user gets it: a fresh venv, a plain (non-editable) `pip install .`, then from another
directory `python -m mmneuron_jax --config=llava_next_demo --workdir=<dir>` writes the report, and the
`mmneuron` console script lists the packaged configs. Nothing downloads: the new venv sees this
interpreter's third-party packages through a .pth file (`pip install --no-deps --no-build-isolation`)."""
import os
import shutil
import subprocess
import sys
import venv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The smallest demo run that still goes through every stage (as tests/test_mmneuron_pipeline.py).
SMALL = ["--config.data.n_per_domain=6", "--config.stats.max_samples_per_domain=4", "--config.eval.n_per_domain=2",
         "--config.eval.max_new_tokens=4", "--config.lens.n_per_domain=2"]


def third_party_site_dirs():
  """This interpreter's site-packages directories (not the checkout, not tests/)."""
  return [p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages") and os.path.isdir(p)]


def source_copy(dest):
  """What `pip install .` reads (the build writes build/ and *.egg-info next to it: keep the checkout clean)."""
  os.makedirs(dest)
  for name in ("pyproject.toml", "README.md", "LICENSE"):
    shutil.copy(os.path.join(ROOT, name), dest)
  shutil.copytree(os.path.join(ROOT, "mmneuron_jax"), os.path.join(dest, "mmneuron_jax"),
                  ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
  if os.path.isdir(os.path.join(ROOT, "third_party")):
    shutil.copytree(os.path.join(ROOT, "third_party"), os.path.join(dest, "third_party"))
  return dest


def test_pip_install_then_run_from_another_directory(tmp_path):
  env_dir = str(tmp_path / "venv")
  venv.create(env_dir, with_pip=False)
  python = os.path.join(env_dir, "bin", "python")
  site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        check=True, capture_output=True, text=True).stdout.strip()
  with open(os.path.join(site, "_test_deps.pth"), "w") as f:
    f.write("\n".join(third_party_site_dirs()) + "\n")
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
  env.update(HF_HUB_OFFLINE="1", JAX_PLATFORMS="cpu", PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
  src = source_copy(str(tmp_path / "src"))
  subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps",
                  "--no-build-isolation", src], check=True, env=env, cwd=str(tmp_path))
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  where = subprocess.run([python, "-c", "import mmneuron_jax, mmneuron_jax.configs; print(mmneuron_jax.__file__)"],
                         check=True, capture_output=True, text=True, env=env, cwd=str(elsewhere)).stdout.strip()
  assert where.startswith(site), f"mmneuron_jax imported from {where}, not the fresh venv's {site}"
  for name in ("configs/llava_next_demo.py", "data/synthetic/demo_assets/trained_llava_next/model.safetensors",
               "data/synthetic/demo_assets/trained_instructblip/qformer_tokenizer/tokenizer.json"):
    assert os.path.isfile(os.path.join(site, "mmneuron_jax", name)), f"{name} is not installed (package data)"

  listing = subprocess.run([os.path.join(env_dir, "bin", "mmneuron"), "--help"], check=True, capture_output=True,
                           text=True, env=env, cwd=str(elsewhere)).stdout
  for name in ("llava_next_demo", "miner_qwen2_vl_demo", "readouts_demo", "--show_config"):
    assert name in listing, name
  shown = subprocess.run([python, "-m", "mmneuron_jax", "--config=llava_next_demo:stats.batch_size=3",
                          "--config.eval.batch_size=5", "--show_config"], check=True, capture_output=True,
                         text=True, env=env, cwd=str(elsewhere)).stdout
  assert "id: demo/tiny-llava-next" in shown and "batch_size: 3" in shown and "batch_size: 5" in shown

  workdir = str(tmp_path / "run")
  subprocess.run([python, "-m", "mmneuron_jax", "--config=llava_next_demo", f"--workdir={workdir}", *SMALL],
                 check=True, env=env, cwd=str(elsewhere), timeout=600)
  text = open(os.path.join(workdir, "report.md")).read()
  for section in ("Domain-specific neurons", "Deactivation", "Logit lens"):
    assert section in text
  assert not os.path.exists(os.path.join(elsewhere, "runs")), "the run wrote outside its workdir"


def test_unknown_config_names_the_packaged_ones(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "mmneuron_jax", "--config=no_such_config", f"--workdir={tmp_path}"],
                        capture_output=True, text=True, cwd=ROOT)
  assert proc.returncode != 0
  assert "no_such_config" in proc.stderr and "llava_next_demo" in proc.stderr


def test_launch_main_is_the_same_command_line():
  env = dict(os.environ, PYTHONPATH=ROOT)
  out = subprocess.run([sys.executable, os.path.join(ROOT, "launch", "main.py"), "--help"], capture_output=True,
                       text=True, cwd=ROOT, env=env, check=True).stdout
  assert "llava_next_demo" in out and "--show_config" in out
