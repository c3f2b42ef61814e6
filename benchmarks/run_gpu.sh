#!/usr/bin/env bash
# The GPU measurements of docs/PERFORMANCE.md, on one H100 or H200:
#
#   bash benchmarks/run_gpu.sh [out_dir]         # both tables, ~10 min
#   bash benchmarks/run_gpu.sh [out_dir] passes  # Llama-7B analysis passes only (~2 min)
#   bash benchmarks/run_gpu.sh [out_dir] e2e     # LLaVA-NeXT-7B end to end only (~8 min)
#
# Writes <out_dir>/gpu_7b_bfloat16_cudnn.md and <out_dir>/gpu_llava_next_e2e_7b.md (+ .json), default
# benchmarks/results. The e2e variants: bf16 with cuDNN flash attention (is_causal + key lengths since
# the CausalMask change; the bias branch was the measured 10.47 samples/s), bf16 with XLA attention,
# and the fp32 modes (true fp32, bf16_6x emulation, and the cheaper bf16_3x).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/results}"
what="${2:-all}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
if [[ "$what" == all || "$what" == passes ]]; then
  python benchmarks/throughput.py --size=7b --dtype=bfloat16 --attention=cudnn --out="$out/gpu_7b_bfloat16_cudnn.md"
fi
if [[ "$what" == all || "$what" == e2e ]]; then
  python benchmarks/llava_next_e2e.py --out="$out/gpu_llava_next_e2e_7b.md" \
    --variants=bfloat16:cudnn:highest,bfloat16:xla:highest,float32:xla:highest,float32:xla:bf16_6x,float32:xla:bf16_3x
fi
