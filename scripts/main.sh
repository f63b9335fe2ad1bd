#!/usr/bin/env bash
# The main job: install into .venv, train configs/dates.yaml, evaluate on the test split, and write
# explanations of a few test sources into the run's output_dir: attention and integrated gradients
# (JSON + PNG heatmaps) and one HTML page of them all (explanations/report.html).
# Extra arguments go to `cronos train` (e.g. --set training.epochs=2).
#
# Run again, it continues its own earlier run in runs/dates (training.resume=auto): a finished run
# is kept as it is and only evaluated again; an interrupted one (Ctrl-C, kill) goes on from its
# last.pt. To start over, delete runs/dates first.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
RUN="$ROOT/runs/dates"     # configs/dates.yaml: output_dir ../runs/dates
if [ -f "$RUN/last.pt" ]; then
    echo "main job: $RUN holds this job's earlier run; continuing it (delete the folder to start over)" >&2
fi
"$VENV/bin/cronos" train configs/dates.yaml --set training.resume=auto "$@"
"$VENV/bin/cronos" evaluate "$RUN/best.pt" --data test --out "$RUN/test_metrics.json" --overwrite
mapfile -t SOURCES < <(head -n 4 data/dates/test.tsv | cut -f1)
"$VENV/bin/cronos" explain "$RUN/best.pt" "Thu 26 Nov 2026" "${SOURCES[@]}" --out "$RUN/explanations" \
    --method integrated_gradients --html "$RUN/explanations/report.html" --overwrite
echo "done: $RUN/{best.pt,last.pt,metrics.jsonl,test_metrics.json,explanations/ (report.html)}"
