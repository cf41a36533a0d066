"""`brainmri batch` throughput: slices per second on a Dask LocalCluster of 1 and of 2 worker processes, here.

A synthetic archive (core.demo series: no patient data) is triaged by `batch.run_batch`, the command's own path,
twice per cluster: a warm-up (process start, imports, every worker's model load and a study per worker: what each
worker pays once), then the measured archive into a fresh folder. Printed per worker count: start-up seconds, wall
seconds, slices/s, and the ratio to one worker (docs/BATCH.md turns these into N machines x 10,000 studies).

    .venv/bin/python benchmarks/batch_bench.py [--studies 8] [--slices 48] [--workers 1 2] [--model ID]
                                               [--runtime auto|onnx|keras]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from brainmri_desktop.batch import BatchOptions, _model, read_sources, run_batch  # noqa: E402
from brainmri_desktop.core import runtime  # noqa: E402
from brainmri_desktop.core.demo import write_series  # noqa: E402
from brainmri_desktop.core.model_choice import find_model  # noqa: E402
from brainmri_desktop.core.packages import discover  # noqa: E402


def archive(root: Path, studies: int, slices: int, name: str) -> Path:
    lines = []
    for k in range(studies):
        write_series(root / f"{name}{k}", n=slices, size=256, tumour_slices=range(slices // 3, slices // 2))
        lines.append(f"{name}{k}")
    listing = root / f"{name}.txt"
    listing.write_text("\n".join(lines) + "\n")
    return listing


def measure(workers: int, entry, warm: Path, measured: Path, out: Path) -> tuple[float, float, int]:
    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        client.run(lambda e: _model(e)[1], entry)  # every worker loads its model
        run_batch(client, read_sources(warm)[:workers], BatchOptions(str(out / "warm"), entry), progress=False)
        startup = time.perf_counter() - t0
        t1 = time.perf_counter()
        results = run_batch(client, read_sources(measured), BatchOptions(str(out / "run"), entry), progress=False)
        wall = time.perf_counter() - t1
    failed = [r for r in results if r.status != "done"]
    if failed:
        raise SystemExit(f"{len(failed)} studies failed: {failed[0].error}")
    return startup, wall, sum(r.slices for r in results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=8)
    parser.add_argument("--slices", type=int, default=48, help="slices per study (256x256 DICOM)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--model", help="model id (default: the application's default)")
    parser.add_argument("--runtime", choices=runtime.RUNTIMES, help="as `brainmri --runtime` (default: auto)")
    args = parser.parse_args()
    if args.runtime:
        os.environ[runtime.ENV_RUNTIME] = args.runtime  # the workers the clusters start inherit it
    entry = find_model(discover([]), args.model)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        warm = archive(tmp, max(args.workers), args.slices, "warm")
        measured = archive(tmp, args.studies, args.slices, "study")
        print(f"{entry.manifest.id} on {runtime.resolve(entry.manifest, entry.path)}: {args.studies} studies x "
              f"{args.slices} slices (256x256 DICOM), load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"{'workers':>7} {'start-up s':>10} {'wall s':>7} {'slices/s':>8} {'vs 1':>5}")
        base = None
        for workers in args.workers:
            startup, wall, slices = measure(workers, entry, warm, measured, tmp / f"out{workers}")
            rate = slices / wall
            base = base or rate
            print(f"{workers:>7} {startup:>10.1f} {wall:>7.1f} {rate:>8.1f} {rate / base:>5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
