"""`brainmri batch`: triage an archive, one Dask task per study, on a LocalCluster or a running Dask scheduler.

The list
    SOURCES is a text file, one study per line: a folder, zip, DICOMDIR, NIfTI volume or image (a relative path is
    read from the list's folder), or a PACS study UID (with --server). Blank lines and lines starting with '#' are
    skipped; a study named twice is triaged once.

The output folder
    `studies/<key>.csv` holds a study's rows, in `brainmri predict`'s columns (its `_csv_text`), and
    `studies/<key>.json` its status; both are written whole (core.atomic), the rows first, so a study is done only when its status says so
    and its rows are there, and a study cut short (a killed worker, Ctrl-C) is absent and triaged again. `<key>` is a
    hash of the source, so no patient name lands in a file name. After each run `studies.csv` is the table of the
    list's studies (status, slices, flagged, seconds, error...) and `slices.csv` every done study's rows. A second run
    over the same folder submits only the studies not done; a failed one (unreadable, server down) is recorded with
    its reason and tried again by the next run.

Dask
    The client sends each task a `Source` and the `BatchOptions`, never images: the worker reads the study from disk
    or retrieves it from the PACS itself. A worker process loads the model on its first study and keeps it
    (`_model`). Tasks catch what a study raises, so Dask only ever sees a worker die: it then runs the task again
    elsewhere (up to `distributed.scheduler.allowed-failures` times), and the rows, written whole under the study's
    own name, land once. Dask and tqdm are the optional `batch` extra, imported only when the command runs: the
    desktop application never needs them.

The terminal shows line numbers and keys, never a path or a study UID (they may name a patient); reasons are in
`studies.csv`.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import re
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import cli as predict
from .core.atomic import atomic_write_text, atomic_write_with
from .core.errors import BrainMRIError
from .core.packages import ModelEntry, discover
from .core.wording import DISCLAIMER
from .pacs import cli as pacs_cli

# A DICOM UID: dot-separated numbers without leading zeros, at most 64 characters (PS3.5 9.1).
_UID = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+")
TABLE_COLUMNS = ["study", "line", "source", "status", "slices", "flagged", "out_of_scope", "unreadable", "seconds",
                 "tries", "worker", "error"]


@dataclass(frozen=True)
class Source:
    line: int  # in the list, from 1
    text: str  # an absolute path, or a study UID
    pacs: bool

    @property
    def key(self) -> str:
        return hashlib.sha1(f"{'pacs' if self.pacs else 'path'}:{self.text}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class BatchOptions:
    """What every task needs; the names `predict.session_for` and the PACS helpers read are those of the command."""

    out: str
    entry: ModelEntry
    tta: int | None = None
    full_tta: bool = False
    high_sensitivity: bool = False
    include_out_of_scope: bool = False
    server: str | None = None
    aet: str = "BRAINMRI"
    user: str = ""
    timeout: float = 30.0
    send_results: bool = False

    def pacs_args(self, study: str) -> argparse.Namespace:
        return argparse.Namespace(server=self.server, aet=self.aet, user=self.user, timeout=self.timeout,
                                  study=study, series=None)


@dataclass
class StudyResult:
    study: str  # the source's key
    line: int
    source: str
    status: str  # done | failed | missing (not run yet, or cut short)
    slices: int = 0
    flagged: int = 0
    out_of_scope: int = 0
    unreadable: int = 0
    seconds: float = 0.0
    tries: int = 0  # times a worker started this study, over every run (a worker that died counts)
    worker: str = ""
    error: str = ""
    model_loaded: bool = field(default=False, compare=False)  # this task loaded the worker's model


def read_sources(list_file: Path) -> list[Source]:
    """The studies a list names, each once, in its order."""
    try:
        text = Path(list_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BrainMRIError(list_file, f"the list of studies could not be read: {getattr(exc, 'strerror', '') or exc}")
    sources, seen = [], set()
    for number, raw in enumerate(text.splitlines(), start=1):
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        uid = len(entry) <= 64 and _UID.fullmatch(entry) is not None and not (Path(list_file).parent / entry).exists()
        source = Source(number, entry if uid else str((Path(list_file).parent / entry).resolve()), uid)
        if source.key not in seen:
            seen.add(source.key)
            sources.append(source)
    if not sources:
        raise BrainMRIError(list_file, "the list names no study (one path or study UID a line)")
    return sources


# One per worker process: every study a worker triages after its first reuses the model that one loaded.
_MODELS: dict[str, object] = {}


def _model(entry: ModelEntry):
    from .core.inference import LoadedModel

    key = f"{entry.path}:{entry.manifest.version}"
    loaded = key not in _MODELS
    if loaded:
        _MODELS.clear()
        _MODELS[key] = LoadedModel.load(entry)
    return _MODELS[key], loaded


def _study_files(out: str | Path, key: str) -> tuple[Path, Path, Path]:
    folder = Path(out) / "studies"
    return folder / f"{key}.csv", folder / f"{key}.json", folder / f"{key}.tries"


def _count_try(path: Path) -> int:
    """One line per start of the study (this host and process), appended: a worker that dies leaves its line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"{socket.gethostname()} {os.getpid()}\n")
    return len(path.read_text(encoding="utf-8").splitlines())


def _triage(source: Source, options: BatchOptions, result: StudyResult) -> None:
    """Writes the study's rows, as `brainmri predict` writes them, and fills the counts of `result`."""
    from .core.io import load_paths

    model, result.model_loaded = _model(options.entry)
    paths = pacs_cli.retrieve_for_predict(options.pacs_args(source.text), lambda done, total: None) if source.pacs \
        else [Path(source.text)]
    report = load_paths(paths)
    if not report.slices:
        why = f"every file was refused ({report.errors[0].reason}...)" if report.errors else "no image found"
        raise BrainMRIError(None, f"nothing to triage: {why}")
    session, tta = predict.session_for(report, model, options)
    for chunk in session.triage(model, tta):
        session.accept(chunk)
    decisions = session.decisions().values()
    result.slices, result.flagged = len(session.results), sum(d.flagged for d in decisions)
    result.out_of_scope = sum(1 for d in decisions if d.out_of_scope)
    result.unreadable = len(report.errors) + len(session.errors)
    atomic_write_text(_study_files(options.out, source.key)[0], predict._csv_text(session, {}, report.errors))
    if options.send_results and source.pacs:
        from .core.gradcam import GradCAM

        pacs_cli.send_for_predict(options.pacs_args(source.text), session, GradCAM(model))


def triage_study(source: Source, options: BatchOptions) -> StudyResult:
    """The Dask task: one study triaged, its rows and status written. Never raises: a study's failure is its
    status, so that the rest of the archive goes on."""
    rows_file, status_file, tries_file = _study_files(options.out, source.key)
    result = StudyResult(source.key, source.line, source.text, "failed", tries=_count_try(tries_file),
                         worker=f"{socket.gethostname()}:{os.getpid()}")
    started = time.perf_counter()
    try:
        _triage(source, options, result)
        result.status = "done"
    except BrainMRIError as exc:  # unreadable, nothing to triage, the server down or refusing
        result.error = str(exc)
    except OSError as exc:  # the output folder: full, read-only
        result.error = f"{exc.filename or options.out}: {exc.strerror or exc}"
    except Exception as exc:  # noqa: BLE001 - one study's unforeseen failure must not stop an archive
        result.error = f"{type(exc).__name__}: {exc}"
    result.seconds = round(time.perf_counter() - started, 3)
    atomic_write_text(status_file, json.dumps(asdict(result)))
    return result


def study_status(out: Path, source: Source) -> StudyResult:
    """What the folder says of a study: done only with its status and its rows both there."""
    rows_file, status_file, _ = _study_files(out, source.key)
    try:
        result = StudyResult(**json.loads(status_file.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return StudyResult(source.key, source.line, source.text, "missing")
    if result.status == "done" and not rows_file.exists():
        result.status = "missing"
    result.line = source.line
    return result


def write_outputs(out: Path, sources: list[Source]) -> list[StudyResult]:
    """`studies.csv`, the table of the list's studies, and `slices.csv`, every done study's rows under one header."""
    results = [study_status(out, s) for s in sources]
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=TABLE_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(asdict(r) for r in results)
    atomic_write_text(out / "studies.csv", table.getvalue())

    def rows(f):
        f.write(",".join(predict.CSV_COLUMNS).encode() + b"\r\n")
        for r in results:
            if r.status == "done":
                text = _study_files(out, r.study)[0].read_bytes()
                f.write(text.split(b"\n", 1)[1])

    atomic_write_with(out / "slices.csv", rows)  # streamed: an archive's rows need not fit in memory twice
    return results


def run_batch(client, sources: list[Source], options: BatchOptions, progress: bool = True) -> list[StudyResult]:
    """Submits every study of `sources` not done in `options.out` to `client`'s cluster, one task each, and waits;
    returns the status of every source."""
    from distributed import as_completed
    from tqdm import tqdm

    out = Path(options.out)
    todo = [s for s in sources if study_status(out, s).status != "done"]
    futures = {client.submit(triage_study, s, options, key=f"brainmri-study-{s.key}", pure=False): s for s in todo}
    # disable=None: no bar when stderr is not a terminal (a scheduled job's log gets the summary line only)
    with tqdm(total=len(sources), initial=len(sources) - len(todo), unit="study", disable=None if progress else True,
              file=sys.stderr) as bar:
        for future in as_completed(futures):
            source = futures[future]
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - Dask's KilledWorker (and its kin) after too many deaths
                result = StudyResult(source.key, source.line, source.text, "failed",
                                     error=f"the worker running it died every time ({type(exc).__name__}); "
                                           "out of memory?")
                atomic_write_text(_study_files(out, source.key)[1], json.dumps(asdict(result)))
            if result.status != "done":
                bar.write(f"study on line {source.line} ({source.key}) failed: see studies.csv", file=sys.stderr)
            bar.update()
    return write_outputs(out, sources)


def _client(args: argparse.Namespace):
    """A client of the scheduler asked for, or of a new LocalCluster of `--workers` processes (closed with it)."""
    from distributed import Client, LocalCluster

    if args.scheduler:
        return Client(args.scheduler), None
    # One thread per worker: a study is one task, and TensorFlow or XLA already spread each over the cores.
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True)
    print(f"Dask dashboard: {cluster.dashboard_link}", file=sys.stderr)
    return Client(cluster), cluster


def cmd_batch(args: argparse.Namespace) -> int:
    from .core.model_choice import find_model

    try:
        import distributed  # noqa: F401
        import tqdm  # noqa: F401
    except ImportError as exc:
        raise BrainMRIError(None, f"brainmri batch needs the optional 'batch' extra ({exc.name} is missing): "
                                  "pip install 'brainmri[batch]', or pip install -e '.[batch]' in a checkout") from None
    sources = read_sources(args.sources)
    if (pacs := next((s for s in sources if s.pacs), None)) and not args.server:
        raise BrainMRIError(args.sources, f"line {pacs.line} is a study UID: give --server URL")
    if args.send_results and not args.server:
        raise BrainMRIError(None, "--send-results needs --server URL")
    entry = find_model(discover(args.models_dir), args.model)
    options = BatchOptions(str(args.out), entry, args.tta, args.full_tta, args.high_sensitivity,
                           args.include_out_of_scope, args.server, args.aet, args.user, args.timeout,
                           args.send_results)
    if args.server:
        pacs_cli.server_from_args(args)  # a malformed URL is one line here, not a failure in every task
    earlier = sum(study_status(args.out, s).status == "done" for s in sources)
    client, cluster = _client(args)
    try:
        started = time.perf_counter()
        results = run_batch(client, sources, options)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    done = [r for r in results if r.status == "done"]
    failed = len(results) - len(done)
    print(f"{len(done)} of {len(results)} studies done ({len(done) - earlier} triaged by {entry.manifest.id} in "
          f"{time.perf_counter() - started:.0f} s, {earlier} by an earlier run): {sum(r.slices for r in done)} slices, "
          f"{sum(r.flagged for r in done)} flagged; {failed} not done (reasons in {Path(args.out) / 'studies.csv'}; "
          f"run again to retry them). {DISCLAIMER}", file=sys.stderr)
    return 0 if not failed else 1


def _workers(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return int(text)


def add_batch_command(sub, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("batch", parents=parents, help="triage a list of studies on Dask, resumably")
    p.add_argument("sources", type=Path, metavar="SOURCES",
                   help="text file, one study a line: a folder, zip, DICOMDIR, NIfTI or image, or a PACS study UID")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="output folder: studies.csv, slices.csv and studies/ (a second run does only what is missing)")
    p.add_argument("--workers", type=_workers, default=2, help="worker processes of the LocalCluster (default 2)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="a running Dask scheduler instead of a LocalCluster")
    p.add_argument("--model", help="model id (default: as for predict; `brainmri models` lists them)")
    p.add_argument("--tta", type=predict.tta_count, help="test-time augmentations (default: the model's)")
    p.add_argument("--full-tta", action="store_true", help="augment every slice, not only those near the threshold")
    p.add_argument("--high-sensitivity", action="store_true", help="use the model's high-sensitivity operating point")
    p.add_argument("--include-out-of-scope", action="store_true",
                   help="flag slices outside what the model was trained on by their probability too")
    group = p.add_argument_group("PACS (DICOMweb or DIMSE), for study UIDs in the list")
    pacs_cli._server_arguments(group, required=False)
    group.add_argument("--send-results", action="store_true",
                       help="store each PACS study's structured report (and flagged captures) in it, as predict does")
    p.set_defaults(func=cmd_batch)
