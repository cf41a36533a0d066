#!/usr/bin/env bash
# Packs what a training run on the GPU machine needs into call folders under .gpu/ (ignored by git), each small
# enough to be carried in one device call beside the working tree. See docs/GPU_TRAINING.md.
#   scripts/gpu/pack.sh CONFIG [CALL_MB]
# CONFIG: a trainer config (TOML/YAML) whose data folders exist here. CALL_MB: what one call may carry besides the
# tracked files (default: 60 MiB minus the tracked files that travel, the parked weights excepted).
set -euo pipefail
config=${1:?usage: scripts/gpu/pack.sh CONFIG [CALL_MB]}
cd "$(git rev-parse --show-toplevel)"
PY=${PYTHON:-.venv/bin/python}
WHEELS=${GPU_WHEELS:-../shared/tools/gpu-wheels}
grep -qxF '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
mkdir -p .gpu/wheels .gpu/data
if ! ls .gpu/wheels/keras-*.whl >/dev/null 2>&1; then
  "$WHEELS" .gpu/wheels
  # The core reads NIfTI through nibabel (pure Python), which the machine lacks.
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    -d .gpu/wheels "nibabel==$("$PY" -c 'import nibabel; print(nibabel.__version__)')"
fi
rm -rf .gpu/data .gpu/call*
"$PY" -m trainer.remote pack-data --config "$config" --out .gpu/data --quality "${QUALITY:-90}" \
  --workers "${PACK_WORKERS:-2}"
rm -f .gpu/config.*
cp "$config" ".gpu/config.${config##*.}"
# Tracked files travel with every call; files over 8 MiB (the bundled ResNet50's weights) are parked by
# scripts/gpu/park.sh and do not count.
tracked=$(git ls-files -z | xargs -0 stat -c %s 2>/dev/null \
  | awk '$1 <= 8388608 {s += $1} END {print int(s / 1048576) + 1}')
budget=${2:-$((60 - tracked))}
"$PY" - "$budget" <<'PY'
import shutil, sys
from pathlib import Path
budget = float(sys.argv[1]) * (1 << 20)
items = sorted(Path(".gpu/wheels").iterdir()) + sorted(Path(".gpu").glob("config.*"))
items += sorted(Path(".gpu/data").iterdir())
calls, size = [[]], 0.0
for item in items:
    s = item.stat().st_size
    if s > budget:
        sys.exit(f"{item} ({s / (1 << 20):.1f} MiB) is larger than one call may carry ({budget / (1 << 20):.0f} MiB)")
    if size + s > budget:
        calls.append([])
        size = 0.0
    calls[-1].append(item)
    size += s
for k, call in enumerate(calls, start=1):
    mib = sum(i.stat().st_size for i in call) / (1 << 20)
    for item in call:
        rel = item.relative_to(".gpu")
        target = Path(f".gpu/call{k}") / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        # the wheels stay in .gpu/wheels for the next pack; the rest moves
        (shutil.copyfile if item.parent.name == "wheels" else shutil.move)(item, target)
    print(f"call {k}: carry .gpu/call{k} ({len(call)} files, {mib:.1f} MiB)")
print(f"{len(calls)} calls; the last one trains: see docs/GPU_TRAINING.md")
PY
