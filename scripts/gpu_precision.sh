#!/usr/bin/env bash
# Mixed precision and compile on a CUDA GPU, in a few minutes (what issue [3/6] asks to measure there):
#   - the GPU tests of half precision (P1/P2 in bf16 and fp16, a compiled half-precision run);
#   - scripts/benchmark.py on the Transformer config in fp32, bf16 and fp16, each eager and compiled
#     (--compile: compiled and eager steps alternate), target tokens/s and the memory of a step.
#
#   bash scripts/gpu_precision.sh OUT_DIR [MULTI30K_ROOT]
#
# Needs a python3 with a CUDA build of torch and cronos's dependencies; runs from this checkout.
set -uo pipefail
out=$(mkdir -p "$1" && cd "$1" && pwd)
root=$(cd "${2:-data/multi30k}" && pwd)
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -m pytest -q -p no:cacheprovider tests/test_device.py -k "half_precision"; } >"$out/precision.log" 2>&1
for precision in fp32 bf16 fp16; do
    python3 scripts/benchmark.py configs/multi30k_transformer.yaml --set "data.root=$root" \
        --set "training.precision=$precision" --steps 40 --mask-pairs 10 --decode 500 --compile \
        --json "$out/transformer_$precision.json" >>"$out/precision.log" 2>&1
done
cat "$out/precision.log"
