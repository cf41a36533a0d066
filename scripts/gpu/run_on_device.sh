#!/usr/bin/env bash
# Runs on the GPU machine (through the device tool), in the repository root. See docs/GPU_TRAINING.md.
#   bash scripts/gpu/run_on_device.sh CALL_DIR [--stage-only] [brainmri-train train options...]
# Copies CALL_DIR (a folder made by scripts/gpu/pack.sh; "-" for none) into $WORK (default /tmp/brainmri-gpu, which survives
# between calls while the machine stays warm) and installs the carried wheels once. With --stage-only it stops there.
# Otherwise it trains under JAX from the packed data into $WORK/$RUN (default run) with --resume (a run stopped by
# --time-budget or by the command's time limit goes on from its last epoch), and when the run is finished writes it to
# $OUT as pieces that may come back (python -m trainer.remote pack-run). Exit status: 0 finished, 3 stopped by the time
# budget (call again), anything else an error.
set -uo pipefail
call_dir=${1:?usage: run_on_device.sh CALL_DIR [--stage-only] [train options...]}
shift
WORK=${WORK:-/tmp/brainmri-gpu}
OUT=${OUT:-$WORK/out}
mkdir -p "$WORK" "$OUT"
[ "$call_dir" = - ] || cp -r "$call_dir"/. "$WORK"/
echo "staged: $(ls "$WORK/data" 2>/dev/null | wc -l) data files, $(ls "$WORK/wheels" 2>/dev/null | wc -l) wheels"
PY=${PYTHON:-python3}
if ls "$WORK"/wheels/*.whl >/dev/null 2>&1 && [ ! -e "$WORK/site/.installed" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" \
    "$WORK"/wheels/*.whl || exit 1
  touch "$WORK/site/.installed"
fi
if [ "${1:-}" = "--stage-only" ]; then exit 0; fi
export PYTHONPATH="$PWD:$WORK/site${PYTHONPATH:+:$PYTHONPATH}" KERAS_BACKEND=${KERAS_BACKEND:-jax} PYTHONUNBUFFERED=1
config=$(ls "$WORK"/config.* | head -1)
RUN=${RUN:-run}
"$PY" -m trainer train --config "$config" --packed-data "$WORK/data" --out "$WORK/$RUN" --resume "$@" \
  2>&1 | tee -a "$WORK/$RUN.log"
status=${PIPESTATUS[0]}
cp "$WORK/$RUN.log" "$OUT/train.log"
if [ "$status" = 0 ]; then
  "$PY" -m trainer.remote pack-run "$WORK/$RUN" "$OUT" || exit 1
  ls -l "$OUT"
fi
exit "$status"
