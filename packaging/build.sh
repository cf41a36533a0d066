#!/usr/bin/env bash
# Builds dist/BrainMRI/ (one folder) and dist/BrainMRI-<version>-linux-x86_64.tar.gz; prints sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
"$BIN/python" -m pip install -q -e ".[package]"
"$BIN/pyinstaller" --noconfirm --clean --distpath dist --workpath build/pyinstaller packaging/brainmri.spec
version=$("$BIN/python" -c "import brainmri_desktop; print(brainmri_desktop.__version__)")
tar -C dist -czf "dist/BrainMRI-$version-linux-x86_64.tar.gz" BrainMRI
du -sh dist/BrainMRI "dist/BrainMRI-$version-linux-x86_64.tar.gz"
