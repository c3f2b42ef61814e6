#!/usr/bin/env bash
# Run one experiment on several GPU nodes: start this script once per node (one process per node,
# each seeing all of its node's GPUs); process 0 also hosts the jax coordinator (not run in CI).
#
# By hand / any launcher (ssh, pdsh, k8s), on node i of N:
#   COORDINATOR=node0.internal:12355 NUM_NODES=N NODE_RANK=i bash launch/gpu_nodes.sh \
#     --config=llava_next_7b --workdir=/shared/runs/llava_next_7b \
#     --config.model.path=/shared/llava-v1.6-vicuna-7b-hf --config.data.path=/shared/mmneuron
# Under SLURM (one task per node; rank, count and the first node's name come from SLURM):
#   srun --nodes=N --ntasks-per-node=1 --gpus-per-node=8 bash launch/gpu_nodes.sh --config=... --workdir=...
#
# Before: the repo and a venv with `pip install -e . "jax[cuda12]"` on every node (or a shared disk);
# model, data and workdir on a filesystem every node sees (only process 0 writes reports).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -n "${SLURM_PROCID:-}" && -z "${NODE_RANK:-}" ]]; then
  NODE_RANK=$SLURM_PROCID
  NUM_NODES=$SLURM_NTASKS
  COORDINATOR=${COORDINATOR:-$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1):12355}
fi
: "${COORDINATOR:?set COORDINATOR=<host of rank 0>:<port>}" "${NUM_NODES:?set NUM_NODES}" "${NODE_RANK:?set NODE_RANK}"
[[ -f .venv/bin/activate ]] && . .venv/bin/activate
export HF_HUB_OFFLINE=1
export MMNEURON_COORDINATOR_ADDRESS="$COORDINATOR" MMNEURON_NUM_PROCESSES="$NUM_NODES" MMNEURON_PROCESS_ID="$NODE_RANK"
exec python -m mmneuron_jax "$@"
