#!/usr/bin/env bash
# Brings a run trained on the GPU machine back into a run folder here, ready for `brainmri-train export`.
#   scripts/gpu/unpack.sh FILES_DIR RUN_DIR
# FILES_DIR: the folder the device call's files came back in (run-index.json and run.zip.part.NNN).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
"${PYTHON:-.venv/bin/python}" -m trainer.remote unpack-run "${1:?usage: unpack.sh FILES_DIR RUN_DIR}" "${2:?RUN_DIR}"
