#!/usr/bin/env bash
# Issue 15 recipe search at the demo scale (CPU): one learning curve per tried change, scored on the first 8
# held-out test clips at steps 120 / 240 / 360 (`main.py curve`, sweeps/curve.py). Run one at a time on an
# otherwise idle machine (wall times are part of the result). Usage: bash bench/curves/demo_recipes.sh [NAME...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/curves}
curve() { local name=$1; shift; $PY main.py curve -e demo --at 120,240,360 --clips 8 --quiet \
  run.output_dir=$OUT run.name=$name train.logger.kind=csv train.sample_clips=0 "$@"; }
declare -A RUNS=(
  [base]=""                                                    # make demo's recipe today
  [motion4]="train.flow.motion_weight=4"                       # loss weighted toward latents that move
  [refnoise]="train.flow.reference_noise=0.3"                  # frame 0 noised: copying it is not exact
  [lognorm]="train.flow.timestep_dist=logit_normal"            # more steps at mid noise
  [shift1]="train.flow.shift=1.0"                              # Wan's shift 3 is for large latents; ours are 8x8
  [ch8]="model.codec.channels=8"                               # fewer low-variance PCA channels to denoise
)
for name in "${@:-base motion4 refnoise lognorm}"; do
  for one in $name; do
    echo "== $one: ${RUNS[$one]}"; curve "$one" ${RUNS[$one]}
    if [ "$one" = base ]; then  # the same weights sampled with dual CFG (ActAvatar uses 5 / 5 on Wan2.2)
      curve base --tag cfg4 sample.text_scale=4.0 sample.audio_scale=4.0
    fi
  done
done
$PY main.py curve --overlay $OUT/*/curve*/curve.csv --out $OUT/overlay.png
