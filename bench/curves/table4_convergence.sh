#!/usr/bin/env bash
# Issue 15 Deliver 7 / Targets: had the ActAvatar Table 4 rows converged at their 300 steps? Each row is
# trained once for twice the budget (600 steps of 8, the same cosine schedule stretched to 600) from the
# shipped base, seed 0, and scored on the first 8 held-out test clips at steps 150 / 300 / 450 / 600
# (`main.py curve`). If a row's metrics still rise between 300 and 600, the 300-step table is not converged.
# The full two-stage row first fits actavatar_stage1 (150 steps, its table budget) into runs/actavatar_stage1,
# where actavatar_stage2 initialises from. Run one at a time on an otherwise idle machine.
# Usage: bash bench/curves/table4_convergence.sh [ROW...]   (rows: global paca paca_progressive stage2)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/curves}
RESULTS=bench/results/curves/table4
mkdir -p "$RESULTS"
for row in "${@:-global paca paca_progressive stage2}"; do
  for one in $row; do
    if [ "$one" = stage2 ]; then
      $PY main.py fit -e actavatar_stage1 --resume auto --quiet train.logger.kind=csv train.sample_clips=0
    fi
    $PY main.py curve -e "actavatar_$one" --at 150,300,450,600 --clips 8 --split test --quiet \
      run.output_dir=$OUT run.name="table4_$one" train.max_steps=600 train.logger.kind=csv train.sample_clips=0
    cp "$OUT/table4_$one/curve-test/curve.csv" "$RESULTS/$one.csv"
    truth="$OUT/table4_$one/curve-test/ground_truth.json"  # the same test split for every row
  done
done
cp "$truth" "$RESULTS/ground_truth.json"
csvs=$(ls "$RESULTS"/*.csv)
# shellcheck disable=SC2086
$PY main.py curve --overlay $csvs --out "$RESULTS/overlay.png"
