"""Prints the application's run-time requirements for a frozen build, one per line.

They are pyproject.toml's dependencies, with TensorFlow's CPU-only wheel where one exists (Linux and Windows): the
full Linux wheel adds about 300 MB of CUDA kernels (an archive of 746 MB instead of under 700) that a frozen
application could use only with a matching CUDA installation beside it.
"""

import re
import sys
import tomllib
from pathlib import Path


def requirements(platform: str = sys.platform) -> list[str]:
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    cpu_wheel = platform.startswith(("linux", "win"))
    return [re.sub(r"^tensorflow(?=[<>=!~ ]|$)", "tensorflow-cpu", dep) if cpu_wheel else dep
            for dep in project["dependencies"]]


if __name__ == "__main__":
    print("\n".join(requirements()))
