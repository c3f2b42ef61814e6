#!/usr/bin/env bash
# Run one experiment on every worker VM of a Cloud TPU pod slice (v4-32, v5e-64, ...): one
# process per VM, all started by a single `gcloud ... ssh --worker=all` (not run in CI).
#
#   TPU_NAME=my-pod ZONE=us-central2-b bash launch/tpu_pod.sh \
#     --config=llava_next_7b --workdir=/mnt/runs/llava_next_7b \
#     --config.model.path=/mnt/llava-v1.6-vicuna-7b-hf --config.data.path=/mnt/mmneuron
#
# Before: the repo at $REPO on every worker (e.g. `gcloud compute tpus tpu-vm scp --worker=all
# --recurse . $TPU_NAME:~/mmneuron_jax`) with a venv holding `pip install -e . "jax[tpu]"`; model,
# data and workdir on a disk or bucket every worker sees (only process 0 writes reports).
# Coordinator: the default (COORDINATOR unset) lets jax find the pod itself
# (MMNEURON_DISTRIBUTED=auto -> jax.distributed.initialize()). With COORDINATOR=<worker-0 internal
# IP>:8476 and NUM_WORKERS=<VMs> it is explicit instead: each VM's process id is its
# agent-worker-number from the TPU VM metadata server.
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
REPO=${REPO:-'~/mmneuron_jax'}
ARGS=$(printf ' %q' "$@")
if [[ -n "${COORDINATOR:-}" ]]; then
  : "${NUM_WORKERS:?set NUM_WORKERS (VMs in the slice) with COORDINATOR}"
  ENV="MMNEURON_COORDINATOR_ADDRESS=$COORDINATOR MMNEURON_NUM_PROCESSES=$NUM_WORKERS MMNEURON_PROCESS_ID=\$(curl -s -H Metadata-Flavor:Google http://metadata.google.internal/computeMetadata/v1/instance/attributes/agent-worker-number)"
else
  ENV="MMNEURON_DISTRIBUTED=auto"
fi
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" ${PROJECT:+--project="$PROJECT"} --worker=all --command="cd $REPO && . .venv/bin/activate && export HF_HUB_OFFLINE=1 $ENV && python -m mmneuron_jax$ARGS"
