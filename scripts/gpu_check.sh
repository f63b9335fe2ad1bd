#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one run, on a machine whose python3 has a CUDA build of torch,
# pyyaml, tqdm, sacrebleu, pytest and hypothesis (cronos runs from this checkout, not installed):
#   - the full Multi30k trainings of both shipped configs, side by side on the one GPU, each followed
#     by its test-set evaluation (beam 5, as the configs say) and the test translations;
#   - meanwhile, the GPU tests (tests/test_device.py) and the padding report on CUDA.
#
#   bash scripts/gpu_check.sh OUT_DIR [MULTI30K_ROOT] [TRAIN_SECONDS]
#
# OUT_DIR gets small files only (logs, metrics, scores, translations); checkpoints go to
# $CRONOS_GPU_RUNS (default /tmp/cronos-gpu-runs).  A training still running after TRAIN_SECONDS
# (default 420) is sent SIGTERM: it writes last.pt and stops, and its best.pt so far is evaluated
# (its log then says "stopped by SIGTERM"; resume with --set training.resume=auto).
set -uo pipefail
out=$(mkdir -p "$1" && cd "$1" && pwd)
root=$(cd "${2:-data/multi30k}" && pwd)
train_seconds=${3:-420}
runs=${CRONOS_GPU_RUNS:-/tmp/cronos-gpu-runs}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1

train_and_test() {  # $1: config name (gru | transformer)
    local name=multi30k_$1 log="$out/$1.log" started
    started=$(date +%s)
    timeout -s TERM "$train_seconds" python3 -m cronos train "configs/$name.yaml" --set "data.root=$root" \
        --set "output_dir=$runs/$name" --set training.overwrite=true --set training.progress=false >"$log" 2>&1
    echo "train exit $? after $(( $(date +%s) - started )) s" >>"$log"
    started=$(date +%s)
    python3 -m cronos evaluate "$runs/$name/best.pt" --data test --out "$out/$1_test.json" >>"$log" 2>&1
    python3 -m cronos translate "$runs/$name/best.pt" <"$root/test_2016_flickr.de" >"$out/$1_test.hyp.en" 2>>"$log"
    echo "test evaluation + translation exit $? after $(( $(date +%s) - started )) s" >>"$log"
    { echo "--- metrics.jsonl"; cat "$runs/$name/metrics.jsonl"; } >>"$log"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__)"; } >"$out/check.log" 2>&1
train_and_test gru & gru=$!
train_and_test transformer & transformer=$!
{ echo "--- pytest tests/test_device.py"
  python3 -m pytest -q -p no:cacheprovider tests/test_device.py
  echo "--- scripts/padding_report.py --device cuda --batches 10"
  python3 scripts/padding_report.py --device cuda --batches 10; } >>"$out/check.log" 2>&1
wait $gru $transformer
cat "$out/check.log"; tail -n 3 "$out"/gru.log "$out"/transformer.log
