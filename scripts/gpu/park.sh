#!/usr/bin/env bash
# Moves tracked files over 8 MiB (the bundled ResNet50's weights) out of the working tree for a device call, and
# back: every call carries the tracked files, at most 64 MiB in all.
#   scripts/gpu/park.sh out | back
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
PARK=${PARK:-/tmp/brainmri-parked}
case "${1:?usage: park.sh out|back}" in
  out) git ls-files -z | while IFS= read -r -d '' f; do
         if [ -f "$f" ] && [ "$(stat -c %s "$f")" -gt 8388608 ]; then
           mkdir -p "$PARK/$(dirname "$f")" && mv "$f" "$PARK/$f" && echo "parked $f"
         fi
       done ;;
  back) (cd "$PARK" && find . -type f -print0) | while IFS= read -r -d '' f; do
          mv "$PARK/$f" "$f" && echo "restored $f"
        done ;;
  *) echo "usage: park.sh out|back" >&2; exit 2 ;;
esac
