"""Prints the application's run-time requirements for a frozen build, one per line: pyproject.toml's dependencies,
which hold no TensorFlow (the application runs packages' ONNX graphs; the trainer's extra brings TensorFlow)."""

import sys
import tomllib
from pathlib import Path


def requirements() -> list[str]:
    return tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["dependencies"]


if __name__ == "__main__":
    print("\n".join(requirements()))
