"""The PACS part of the command line: `brainmri pacs ...`, and what `brainmri predict --server` calls.

Contract for brainmri_desktop/cli.py (the wiring is these lines and nothing more):

    from .pacs import cli as pacs_cli
    pacs_cli.add_pacs_commands(sub)                # `brainmri pacs find|retrieve|cache`
    pacs_cli.add_predict_arguments(predict_parser) # --server --user --aet --timeout --study --series --send-results

    # in cmd_predict, before loading (args.inputs may then be empty):
    if args.server:
        paths = pacs_cli.retrieve_for_predict(args)           # list[Path] in the cache, for load_paths
    # after the session's triage, the slices with a result and the session's decisions go into the report:
    if args.send_results:
        print(pacs_cli.send_for_predict(args, session), file=sys.stderr)

--server takes a DICOMweb root (http[s]://...) or a DIMSE peer (dicom://AE_TITLE@host:port: C-FIND, C-GET, C-STORE).
The commands and both helpers raise BrainMRIError subclasses only (PacsError for the server, CancelledError,
UnreadableFileError for a source that cannot be read back), whose str() is the one message to print: main's handler
prints it. `check_predict_arguments(args)` returns the usage error to show (for parser.error), or None; predict's
positional paths must become optional (nargs="*") for --server. Passwords and tokens come from BRAINMRI_PACS_PASSWORD
and BRAINMRI_PACS_TOKEN, never from arguments (other users can read a process's arguments); no message or output
holds them. `pacs find` shows a patient's ID and accession number only with --show-identity. Retrieved instances
stay in the per-user cache (`brainmri pacs cache --clear` empties it); nothing is written beside the user's files.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import BrainMRIError
from .settings import DEFAULT_TIMEOUT_S, ENV_PASSWORD, ENV_TOKEN, ServerSettings

# The rest of the package is imported where a command runs: pynetdicom, highdicom and dicomweb-client take 0.7 s to
# import, which `brainmri models`, `brainmri predict PATH` and the window's start would otherwise pay every time.
if TYPE_CHECKING:
    from ..core.session import Session
    from .client import Server
    from .dimse import DimseSettings


def _server_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("--server", required=required, metavar="URL",
                        help="DICOMweb root, for example http://127.0.0.1:8042/dicom-web, or a DIMSE peer "
                             "dicom://AE_TITLE@host:port")
    parser.add_argument("--aet", default="BRAINMRI", help="calling AE title for DIMSE (default BRAINMRI)")
    parser.add_argument("--user", default="", help=f"user name for basic authentication (password from {ENV_PASSWORD};"
                                                   f" a bearer token from {ENV_TOKEN})")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
                        help=f"seconds to wait for the server (default {DEFAULT_TIMEOUT_S:g})")


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("PACS (DICOMweb or DIMSE)")
    _server_arguments(group, required=False)
    group.add_argument("--study", metavar="STUDY_UID", help="with --server: triage this study, retrieved to the cache")
    group.add_argument("--series", action="append", metavar="SERIES_UID",
                       help="with --study: only this series (repeat for several); default every image series")
    group.add_argument("--send-results", action="store_true",
                       help="with --server: store a DICOM structured report of the result in the study, with "
                            "burnt-in Grad-CAM captures of the flagged slices")


def check_predict_arguments(args: argparse.Namespace) -> str | None:
    if args.server and not args.study:
        return "--server needs --study STUDY_UID"
    if (args.study or args.send_results or args.series) and not args.server:
        return "--study, --series and --send-results need --server URL"
    return None


def server_from_args(args: argparse.Namespace) -> ServerSettings | DimseSettings:
    from .dimse import DimseSettings, is_dimse_url

    try:
        if is_dimse_url(args.server):
            return DimseSettings.from_url(args.server, args.aet, args.timeout)
        return ServerSettings.from_environment(args.server, args.user, args.timeout)
    except ValueError as exc:
        raise BrainMRIError(None, str(exc)) from None


def client_from_args(args: argparse.Namespace) -> Server:
    from .client import PacsClient
    from .dimse import DimseClient, DimseSettings

    settings = server_from_args(args)
    return DimseClient(settings) if isinstance(settings, DimseSettings) else PacsClient(settings)


def _progress_printer(what: str) -> Callable[[int, int], None]:
    def show(done: int, total: int) -> None:
        if done == total or done % 25 == 0:
            print(f"{what} {done}/{total}", file=sys.stderr)
    return show


def retrieve_for_predict(args: argparse.Namespace, progress: Callable[[int, int], None] | None = None,
                         cancel: Callable[[], bool] | None = None) -> list[Path]:
    """The study's (or the chosen series') instances in the cache, retrieving what is not there yet."""
    from .cache import StudyCache
    from .retrieve import retrieve_study

    client = client_from_args(args)
    result = retrieve_study(client, StudyCache(), args.study, args.series, progress or _progress_printer("retrieved"),
                            cancel)
    return result.paths


def send_for_predict(args: argparse.Namespace, session: "Session", gradcam=None) -> str:
    """Stores the report of the triaged session (its slices retrieved from the study) in the study, with the
    burnt-in Grad-CAM captures of its flagged slices (maps computed with `gradcam` where not cached), as the window
    sends them; the line to show."""
    from .findings import session_findings
    from .send import flagged_overlays, send_results, sent_message

    findings = session_findings(session)
    client = client_from_args(args)
    overlays = flagged_overlays(session, gradcam, findings)
    return sent_message(findings, send_results(client, findings, overlays), client.settings.public_url)


def cmd_find(args: argparse.Namespace) -> int:
    from .query import StudyQuery, find_studies

    query = StudyQuery(patient_id=args.patient or "", date=args.date or "", modality=args.modality or "",
                       accession=args.accession or "", limit=args.limit)
    studies = find_studies(client_from_args(args), query)
    if not studies:
        print("no studies match", file=sys.stderr)
        return 0
    identity = f" {'patient':16} {'accession':16}" if args.show_identity else ""
    print(f"{'date':8}  {'modalities':10} {'series':>6} {'images':>6}{identity}  {'study UID':64}  description")
    for s in studies:
        count = lambda n: "?" if n is None else str(n)  # noqa: E731
        who = f" {s.patient_id[:16]:16} {s.accession[:16]:16}" if args.show_identity else ""
        print(f"{s.date or '-':8}  {','.join(s.modalities)[:10]:10} {count(s.series_count):>6} "
              f"{count(s.instance_count):>6}{who}  {s.uid:64}  {s.description}")
    return 0


def cmd_retrieve(args: argparse.Namespace) -> int:
    from .cache import StudyCache

    paths = retrieve_for_predict(args)
    folder = StudyCache().studies_dir / args.study
    print(f"{len(paths)} instances in {folder}")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from .cache import StudyCache

    cache = StudyCache()
    if args.clear:
        cache.clear()
        print(f"cleared {cache.root}")
    else:
        print(f"{cache.root}: {len(cache.studies())} studies, {cache.size() / 2**20:.1f} MiB "
              f"(at most {cache.max_bytes / 2**30:.1f} GiB, least recently used studies go first)")
    return 0


def _date_range(text: str) -> str:
    from .query import StudyQuery

    try:
        return StudyQuery(date=text).date
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_pacs_commands(subparsers, parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    pacs = subparsers.add_parser("pacs", parents=list(parents), help="search and retrieve studies on a DICOMweb server")
    sub = pacs.add_subparsers(dest="pacs_command", metavar="{find,retrieve,cache}", required=True)
    find = sub.add_parser("find", help="list the studies that match")
    _server_arguments(find, required=True)
    find.add_argument("--patient", metavar="ID", help="patient ID (wildcards * and ? as the server allows)")
    find.add_argument("--date", type=_date_range, metavar="RANGE", help="YYYYMMDD or YYYYMMDD-YYYYMMDD (either end may be open)")
    find.add_argument("--modality", help="a modality in the study, such as MR")
    find.add_argument("--accession", metavar="NUMBER", help="accession number")
    find.add_argument("--limit", type=int, default=100, help="at most this many studies (default 100)")
    find.add_argument("--show-identity", action="store_true", help="also print patient ID and accession number")
    find.set_defaults(func=cmd_find)
    retrieve = sub.add_parser("retrieve", help="retrieve a study into the local cache")
    _server_arguments(retrieve, required=True)
    retrieve.add_argument("--study", required=True, metavar="STUDY_UID")
    retrieve.add_argument("--series", action="append", metavar="SERIES_UID", help="only this series (repeatable)")
    retrieve.set_defaults(func=cmd_retrieve)
    cache = sub.add_parser("cache", help="show the size of the cache of retrieved studies, or clear it")
    cache.add_argument("--clear", action="store_true", help="remove every cached study")
    cache.set_defaults(func=cmd_cache)
