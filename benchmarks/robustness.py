"""How long the hardening takes, where the tests only check what it does: the loaders on fuzzed files (seconds per
mutated input, by seed file) and the PACS client giving up on a server that never answers (seconds from the search
to its error, for a 0.5 s timeout). `make bench` prints it; alone: `python benchmarks/robustness.py [--fuzz-count N]`.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")  # a mutated TIFF is meant to be refused; OpenCV would print why

from brainmri_desktop.core.errors import PacsError  # noqa: E402
from brainmri_desktop.pacs.client import PacsClient  # noqa: E402
from brainmri_desktop.pacs.query import StudyQuery, find_studies  # noqa: E402
from brainmri_desktop.pacs.settings import ServerSettings  # noqa: E402
from tests.fuzz import check_file, fuzz_name, image_seeds, mutate  # noqa: E402


def fuzz_seconds(count: int, seed: int = 0) -> dict[str, list[float]]:
    """Seconds each of `count` mutated inputs took to end in slices or a typed error, by the seed it was made from
    (the seeds in turn, so each gets count / seeds inputs)."""
    rng = np.random.default_rng(seed)
    seeds = image_seeds()
    names = sorted(seeds)
    times: dict[str, list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="brainmri-bench-fuzz-") as tmp:
        folder = Path(tmp)
        for i in range(count):
            name = names[i % len(names)]
            data = mutate(seeds[name], rng)
            t = time.perf_counter()
            check_file(fuzz_name(str(i), name), data, folder)
            times[name].append(time.perf_counter() - t)
            for leftover in folder.iterdir():
                leftover.unlink()
    return times


def silent_server_seconds(timeout_s: float = 0.5) -> float:
    """Seconds from a study search to its error against a server that accepts the connection and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()  # connections wait in the backlog: nobody reads the request
        url = f"http://127.0.0.1:{server.getsockname()[1]}/dicom-web"
        t = time.perf_counter()
        try:
            find_studies(PacsClient(ServerSettings(url, timeout_s=timeout_s)), StudyQuery())
        except PacsError:
            return time.perf_counter() - t
    raise RuntimeError("a server that never answers was answered")


def report(fuzz_count: int = 240) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the mutated files' own complaints: what is timed is reading them
        times = fuzz_seconds(fuzz_count)
    every = np.concatenate([np.asarray(v) for v in times.values()])
    slowest = max(times, key=lambda name: max(times[name]))
    lines = [f"fuzzed loaders: {len(every)} inputs, median {np.median(every) * 1000:.1f} ms, 99th percentile "
             f"{np.percentile(every, 99) * 1000:.0f} ms, slowest {every.max() * 1000:.0f} ms (a mutated {slowest})"]
    waits = [silent_server_seconds(0.5) for _ in range(3)]
    lines.append(f"PACS search against a silent server, 0.5 s timeout: error after "
                 f"{', '.join(f'{w:.2f}' for w in waits)} s (3 runs)")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fuzz-count", type=int, default=240, help="mutated inputs, spread over the seed files")
    args = parser.parse_args()
    print("\n".join(report(args.fuzz_count)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
