#!/usr/bin/env bash
# Runs on the GPU machine (through the device tool), in the repository root: a config and its leave-one-source-out
# twin, trained side by side on the one GPU from one staged pack, so that a single call brings both. See
# docs/GPU_TRAINING.md, "A model and its leave-one-source-out twin".
#   bash scripts/gpu/pair_on_device.sh CALL_DIR SOURCE MINUTES [train options for both...]
#   bash scripts/gpu/pair_on_device.sh --twin          (the next call, while the machine is warm)
# The model's pieces and train.log come back in $OUT, the twin's in $OUT/twin. One call may bring back only 8 files:
# where the twin's do not fit, twin.tar.gz (its results.json and log) comes instead and its pieces wait in
# $WORK/out-twin for the second form. Each run has --time-budget MINUTES; a run that the budget paused is then
# finished at the epoch it reached (best weights, calibration, thresholds and metrics, with --epochs set to that
# epoch, which its config and card then show), so that nothing is left for a call that a cold machine would make
# expensive.
set -uo pipefail
here=$(dirname "$0")
WORK=${WORK:-/tmp/brainmri-gpu}
OUT=${OUT:-$WORK/out}
export WORK
if [ "${1:-}" = "--twin" ]; then
  cp "$WORK"/out-twin/* "$OUT"/ && ls -l "$OUT"
  exit
fi
call_dir=${1:?usage: pair_on_device.sh CALL_DIR SOURCE MINUTES [train options...]}
source=${2:?usage: pair_on_device.sh CALL_DIR SOURCE MINUTES [train options...]}
minutes=${3:?usage: pair_on_device.sh CALL_DIR SOURCE MINUTES [train options...]}
shift 3
bash "$here/run_on_device.sh" "$call_dir" --stage-only || exit 1
# JAX takes three quarters of the GPU's memory at its first use; two processes must share it.
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.45}

train() {  # RUN OUT_DIR [train options...]
  local name=$1 out=$2 status reached
  shift 2
  RUN=$name OUT=$out bash "$here/run_on_device.sh" - --time-budget "$minutes" "$@"
  status=$?
  if [ "$status" = 3 ]; then
    reached=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["epoch"])' \
      "$WORK/$name/checkpoints/state.json")
    echo "time budget reached: finishing $name at epoch $reached"
    RUN=$name OUT=$out bash "$here/run_on_device.sh" - --epochs "$reached" "$@"
    status=$?
  fi
  return "$status"
}

mkdir -p "$WORK/out-twin" "$OUT"
train run "$OUT" "$@" > "$WORK/pair-run.log" 2>&1 &
run_pid=$!
train twin "$WORK/out-twin" --exclude-source "$source" "$@" > "$WORK/pair-twin.log" 2>&1 &
twin_pid=$!
# The device tool returns the end of the output even when it stops the command: say how far each run got.
while kill -0 "$run_pid" 2>/dev/null || kill -0 "$twin_pid" 2>/dev/null; do
  sleep 30
  for name in run twin; do
    echo "[$name $(date +%T)] $(grep -E 'val_(prob_)?auc|stage |early stopping|time budget|Traceback|Error:' "$WORK/pair-$name.log" \
      | tail -n 1 | cut -c1-400)"
  done
done
wait "$run_pid"
run_status=$?
wait "$twin_pid"
twin_status=$?
# One call brings back at most 8 files: the twin's pieces come now in $OUT/twin when they fit beside the model's.
if [ $(( $(ls "$OUT" | wc -l) + $(ls "$WORK/out-twin" | wc -l) )) -le 8 ]; then
  cp -r "$WORK/out-twin" "$OUT/twin"
else
  tar -C "$WORK" -czf "$OUT/twin.tar.gz" pair-twin.log $( [ -e "$WORK/twin/results.json" ] && echo twin/results.json)
fi
for name in run twin; do
  echo "=== $name: the end of its log"
  tail -n 30 "$WORK/pair-$name.log" | cut -c1-600
done
echo "exit status: run $run_status, twin $twin_status"
ls -l "$OUT"
[ "$run_status" = 0 ] && [ "$twin_status" = 0 ]
