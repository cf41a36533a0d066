#!/usr/bin/env bash
# Checks a built dist/BrainMRI: no training framework inside, the archive's size, self-test (the models' graphs under
# ONNX Runtime against the probabilities recorded at export), version, and the time from launch to the first window.
# Runs with an empty environment (no Python, no PYTHONPATH), and without network where `unshare` allows it.
set -euo pipefail
cd "$(dirname "$0")/.."
app=dist/BrainMRI/BrainMRI
home=$(mktemp -d)
trap 'rm -rf "$home"' EXIT
isolated=(env -i HOME="$home" PATH=/usr/bin:/bin LANG=C.UTF-8 QT_QPA_PLATFORM=offscreen)
if unshare -rn true 2>/dev/null; then isolated=(unshare -rn "${isolated[@]}"); note="no network"; else note="network present"; fi
frameworks=$(find dist/BrainMRI -maxdepth 3 \( -iname 'tensorflow*' -o -iname 'keras*' -o -iname 'jax*' \) | head -3)
[ -z "$frameworks" ] || { echo "a training framework is in the build: $frameworks" >&2; exit 1; }
for archive in dist/BrainMRI-*.tar.gz; do
    mb=$(( $(stat -c %s "$archive") / 1048576 ))
    [ "$mb" -le 250 ] || { echo "$archive is $mb MB, over the 250 MB the installer may take" >&2; exit 1; }
done
"${isolated[@]}" "$app" --version
"${isolated[@]}" "$app" --self-test
start=$(date +%s.%N)
shown=$("${isolated[@]}" "$app" --startup-check | sed -n 's/^window shown at //p')
[ -n "$shown" ] || { echo "the main window did not open" >&2; exit 1; }
python3 -c "import sys; print(f\"launch to first shown window: {float(sys.argv[2]) - float(sys.argv[1]):.1f} s ({sys.argv[3]})\")" "$start" "$shown" "$note"
