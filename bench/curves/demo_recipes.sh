#!/usr/bin/env bash
# Issue 15 recipe search at the demo scale (CPU): one learning curve per tried change, scored on the first 8
# held-out test clips at steps 120 / 240 / 360 (`main.py curve`, sweeps/curve.py). Run one at a time on an
# otherwise idle machine (wall times are part of the result). Usage: bash bench/curves/demo_recipes.sh [NAME...]
# SPLIT: the committed bench/results/curves/*.csv were scored on the test split (before `main.py curve`
# defaulted to val), so test reproduces them; SPLIT=val scores the val clips, where new choices belong.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/curves}
SPLIT=${SPLIT:-test}
curve() { local name=$1; shift; $PY main.py curve -e demo --at 120,240,360 --clips 8 --quiet --split $SPLIT \
  run.output_dir=$OUT run.name=$name train.logger.kind=csv train.sample_clips=0 "$@"; }
V="train.flow.prediction=velocity sample.audio_scale=1.0"  # make demo before issue 15 (no guidance)
M="train.flow.prediction=motion sample.audio_scale=1.0"  # the motion runs were scored without guidance
declare -A RUNS=(
  [base]="$V"                                                  # make demo's recipe at the start of issue 15
  [motion4]="$V train.flow.motion_weight=4"                    # loss weighted toward latents that move
  [refnoise]="$V train.flow.reference_noise=0.3"               # frame 0 noised: copying it is not exact
  [lognorm]="$V train.flow.timestep_dist=logit_normal"         # more steps at mid noise
  [shift1]="$V train.flow.shift=1.0"                           # Wan's shift 3 is for large latents; ours are 8x8
  [ch8]="$V model.codec.channels=8"                            # fewer low-variance PCA channels to denoise
  [memorise8]="--split train $V data.num_train=8"              # can the recipe fit 8 clips it sees 360 times?
  [motion]="$M"                                                # the DiT predicts x0 - reference: the copy is free
  [motion_window]="$M model.dit.phase_window_bias=true"        # + a direct "when" (PACA window bias)
  [motion_memorise8]="--split train $M data.num_train=8"       # can it fit 8 clips?
  [motion_wb4]="$M model.dit.phase_window_bias=true model.dit.phase_window_bias_init=4"  # window bias on from step 0
  [motion_mw4]="$M train.flow.motion_weight=4"                 # motion prediction + loss toward moving latents
  [motion_noaudio]="$M model.audio.enabled=false"             # modal competition? text alone, no audio path
  [motion_heads4]="$M model.dit.num_heads=4"                   # 4 heads of 32: room to attend to the phase tokens beside the base
  [motion_synthdit]="$M model.preset=synth"                    # the 7.1M-parameter GPU DiT (192 wide, 8 blocks) at the demo scale
  [x0]="train.flow.prediction=x0 sample.audio_scale=1.0"      # the DiT predicts x0 (scored without guidance, as the motion rows)
  [data1024]="$M data.num_train=1024"                          # not run yet: 8x the clips (each seen ~3x)
  [pretrained]="$M train.init_from=pretrained/synthavatar_base"   # fine-tune the shipped base (make pretrain)
  [pretrained_lr3e4]="$M train.init_from=pretrained/synthavatar_base train.lr=3e-4"  # ... with a gentler step
)
for name in "${@:-base motion}"; do
  for one in $name; do
    if [ "$one" = synth_cpu ]; then  # scale/synth_cpu: 4x the steps and clips, scored every 360 steps
      curve_long() { $PY main.py curve -e demo -e scale/synth_cpu --at 360,720,1080,1440 --clips 8 --quiet --split $SPLIT \
        run.output_dir=$OUT run.name=synth_cpu train.logger.kind=csv train.sample_clips=0 sample.audio_scale=1.0; }
      echo "== synth_cpu"; curve_long; continue
    fi
    echo "== $one: ${RUNS[$one]}"; curve "$one" ${RUNS[$one]}
    if [ "$one" = base ]; then  # the same weights sampled with dual CFG (ActAvatar uses 5 / 5 on Wan2.2)
      curve base --tag cfg4 $V sample.text_scale=4.0 sample.audio_scale=4.0
    fi
    if [ "$one" = motion ]; then  # guidance on the motion weights: both 4, and audio only (scale/demo's 1 / 4)
      curve motion --tag cfg4 $M sample.text_scale=4.0 sample.audio_scale=4.0
      curve motion --tag audio4 $M sample.text_scale=1.0 sample.audio_scale=4.0
    fi
  done
done
$PY main.py curve --overlay $OUT/*/curve*/curve.csv --out $OUT/overlay.png
