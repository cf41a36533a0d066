#!/usr/bin/env bash
# Builds dist/BrainMRI/ (one folder) and dist/BrainMRI-<version>-linux-x86_64.tar.gz, in a build-only virtual
# environment (build/package-venv) that holds the run-time requirements (TensorFlow's CPU wheel, see
# packaging/requirements.py) and PyInstaller, but not the trainer's or the tests' packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=build/package-venv
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$PYTHON" packaging/requirements.py > build/requirements-frozen.txt
"$VENV/bin/python" -m pip install -q -r build/requirements-frozen.txt "pyinstaller>=6.5"
"$VENV/bin/pyinstaller" --noconfirm --clean --log-level WARN --distpath dist --workpath build/pyinstaller \
    packaging/brainmri.spec
version=$("$VENV/bin/python" -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])")
archive="dist/BrainMRI-$version-linux-x86_64.tar.gz"
tar -C dist -cf - BrainMRI | gzip -6 > "$archive"
echo "folder: $(du -sm dist/BrainMRI | cut -f1) MB; archive $archive: $(( $(stat -c %s "$archive") / 1048576 )) MB"
